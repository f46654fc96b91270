//! TLS to Postgres: a private PostgreSQL with SSL on (its own data directory,
//! port and certificates, made by the test), and the real `parley` binary
//! connecting to it as the database URL's `sslmode` asks.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{INTERNAL_API_KEY, JWT_SECRET, spawn_binary, unique};

/// A throw-away PostgreSQL server with `ssl = on`, whose certificate (for
/// `localhost` only) is signed by a CA of the test's own.
struct TlsPostgres {
    dir: PathBuf,
    port: u16,
    server: std::process::Child,
}

impl TlsPostgres {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("pgtls"));
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        // PostgreSQL refuses to run as root: as root, run it as `postgres`.
        let owner = as_postgres_user();
        if let Some((uid, gid)) = owner {
            for path in [dir.clone(), dir.join("server.key"), dir.join("server.pem")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let bin = postgres_bindir();
        let initdb = run_as(owner, &bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = run_as(owner, &bin.join("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(&dir)
            .args(["-c", "ssl=on", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.pem").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let postgres = Self { dir, port, server };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while postgres.plain_client().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the TLS PostgreSQL never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        postgres
    }

    /// The URL of its `postgres` database through `host`, with `query` added.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A connection of the test's own, without TLS (the server takes both).
    async fn plain_client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// `parley migrate` against `url`: its exit status and what it said.
    async fn migrate(&self, url: &str) -> (bool, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
            .arg("migrate")
            .env("PARLEY_DATABASE_URL", url)
            .env("PARLEY_JWT_SECRET", JWT_SECRET)
            .env("PARLEY_INTERNAL_API_KEY", INTERNAL_API_KEY)
            .env("PARLEY_LOG", "warn")
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGQUIT: the immediate shutdown, which also ends the backends.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The uid and gid of `postgres` when the tests run as root.
fn as_postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| {
        let output = Command::new("id").args([flag]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    if id("-u") != "0" {
        return None;
    }
    let of_postgres = |flag: &str| {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "running as root needs a postgres user"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    Some((of_postgres("-u"), of_postgres("-g")))
}

/// `program`, run as `owner` if given (through `setpriv`, which execs: the
/// child is the program itself, so stopping it stops the server).
fn run_as(owner: Option<(u32, u32)>, program: &Path) -> Command {
    match owner {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            command
        }
    }
}

/// Where `initdb` and `postgres` are: `PARLEY_TEST_PG_BINDIR`, or what
/// `pg_config` says.
fn postgres_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PARLEY_TEST_PG_BINDIR") {
        return dir.into();
    }
    let output = Command::new("pg_config").arg("--bindir").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().into()
}

/// Two CAs (the server's, and a stranger's) and a server certificate for
/// `localhost` (no IP address) signed by the first.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, subject) in [
        ("ca", "/CN=Parley test CA"),
        ("stranger-ca", "/CN=Stranger CA"),
    ] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let request = ["req", "-x509", "-nodes", "-days", "1", "-subj", subject];
        openssl(&[&request[..], &ec[..], &["-keyout", &key, "-out", &pem]].concat());
    }
    openssl(
        &[
            &["req", "-new", "-nodes", "-subj", "/CN=localhost"][..],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

/// `sslmode=verify-full` with the server's CA: Parley migrates, serves, and
/// stores a message, and every connection it holds is encrypted.
#[tokio::test]
async fn parley_talks_to_postgres_over_verified_tls_when_the_url_asks() {
    let postgres = TlsPostgres::start().await;
    let url = postgres.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            postgres.file("ca.pem")
        ),
    );
    let (_server, port) = spawn_binary(&[("PARLEY_DATABASE_URL", url)]).await;
    let http = reqwest::Client::new();
    let keys = parley::http::auth::JwtKeys::new(&parley::config::Secret::new(JWT_SECRET));
    let token = |id: &str, role: &str| keys.mint(id, id, role, None, 600).unwrap();
    let (alice, bob) = (unique("company"), unique("candidate"));
    let (alice_token, bob_token) = (token(&alice, "company"), token(&bob, "candidate"));
    for token in [&alice_token, &bob_token] {
        let inbox = http
            .get(format!("http://127.0.0.1:{port}/chat/conversations"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(inbox.status(), StatusCode::OK);
    }
    let opened: Value = http
        .post(format!("http://127.0.0.1:{port}/chat/conversations"))
        .bearer_auth(&alice_token)
        .json(&json!({ "participantId": bob }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = opened["id"].as_str().expect("a conversation").to_owned();
    let sent = http
        .post(format!(
            "http://127.0.0.1:{port}/chat/conversations/{conversation}/messages"
        ))
        .bearer_auth(&alice_token)
        .json(&json!({ "body": "over TLS", "clientMessageId": unique("cmid") }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);

    let client = postgres.plain_client().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM messages WHERE body = 'over TLS'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'parley'",
            &[],
        )
        .await
        .unwrap();
    let (connections, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(connections > 0, "parley holds connections");
    assert_eq!(encrypted, connections, "every one of them over TLS");
}

/// What each mode accepts and refuses: the host name only under
/// `verify-full`, the chain under `verify-ca` (and `require` with a root
/// file, as libpq), and TLS itself under `require`, even from a server that
/// does not offer it.
#[tokio::test]
async fn each_sslmode_refuses_what_it_should() {
    let postgres = TlsPostgres::start().await;
    let (ca, stranger) = (postgres.file("ca.pem"), postgres.file("stranger-ca.pem"));
    let accepted = [
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("127.0.0.1", "sslmode=require".to_owned()),
    ];
    for (host, query) in &accepted {
        let (ok, said) = postgres.migrate(&postgres.url(host, query)).await;
        assert!(ok, "{host} {query}: {said}");
    }
    let refused = [
        // The certificate names localhost, not 127.0.0.1.
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={stranger}"),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=require&sslrootcert={stranger}"),
            "certificate",
        ),
        ("localhost", "sslmode=verify-full".to_owned(), "sslrootcert"),
    ];
    for (host, query, reason) in &refused {
        let (ok, said) = postgres.migrate(&postgres.url(host, query)).await;
        assert!(!ok, "{host} {query} was accepted");
        assert!(said.contains(reason), "{host} {query}: {said}");
    }
    // Someone in the middle answers the TLS request with "no TLS here"
    // (PostgreSQL's one-byte `N`): `require` refuses to go on in clear.
    let stripper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stripper_port = stripper.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = stripper.accept().await {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let stripped =
        format!("postgres://postgres@127.0.0.1:{stripper_port}/postgres?sslmode=require");
    let (ok, said) = postgres.migrate(&stripped).await;
    assert!(!ok, "require went on without TLS");
    assert!(said.contains("TLS"), "{said}");
}
