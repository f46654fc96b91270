-- Dead jobs are listed to admins newest first, paged by this id.
ALTER TABLE dead_jobs ADD COLUMN id bigserial;
CREATE UNIQUE INDEX dead_jobs_id ON dead_jobs (id);
