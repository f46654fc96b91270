-- Full-text search of messages. Marketplaces are multilingual and a message
-- does not say its language, so no language's stemming or stop words: the
-- `simple` parser and dictionary (every word kept as written, lower-cased),
-- behind `unaccent` as a filter, so "cafe" finds "café" and "Zurich" finds
-- "Zürich" — and the highlighting of a snippet marks the accented original.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH CONFIGURATION parley_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION parley_search
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple;
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('parley_search'::regconfig, body)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
