//! `search`: inbox-wide searches by users with many conversations, in a
//! database of millions of messages, at a given rate (open loop), optionally
//! under a chat load.
//!
//! The scenario seeds what it needs straight into the server's database (the
//! API would take hours to write five million messages): `--searchers` users
//! with `--conversations` conversations each, and background conversations
//! of 100 messages up to `--messages` in all. Bodies are drawn from a
//! multilingual vocabulary (accents included) with a Zipf-like skew, as real
//! text is; the search index is dropped while seeding and built again after,
//! as a bulk import would, and the tables vacuumed. A database seeded once
//! is reused by later runs against it. Queries are one or two words, or a
//! word being typed (a prefix), some typed without their accents.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use super::chat;
use crate::{schedule::open_loop, server::Target};

#[derive(Clone, Debug, clap::Args)]
pub struct SearchArgs {
    /// Messages in the database in all.
    #[arg(long, default_value_t = 5_000_000)]
    pub messages: i64,
    /// Users who search.
    #[arg(long, default_value_t = 10)]
    pub searchers: i64,
    /// Conversations of each searcher.
    #[arg(long, default_value_t = 500)]
    pub conversations: i64,
    /// Messages in each of a searcher's conversations.
    #[arg(long, default_value_t = 20)]
    pub per_conversation: i64,
    /// Searches per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// A chat load alongside (`--chat-rate`, `--chat-users`).
    #[command(flatten)]
    pub chat: chat::Alongside,
    /// The server's database, which the scenario seeds.
    #[arg(
        long,
        env = "PARLEY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/parley_load"
    )]
    pub database_url: String,
}

/// The prefix of the seeded users' ids: a database seeded once can be
/// searched again by later runs (`LOADTEST_DATABASE_URL`, see
/// `scripts/loadtest.sh`).
const SEED: &str = "search-seed";

/// Words of a marketplace's chats, in several languages.
const VOCABULARY: &[&str] = &[
    "interview",
    "entrevista",
    "entretien",
    "Vorstellungsgespräch",
    "schedule",
    "horário",
    "réunion",
    "reunión",
    "Besprechung",
    "salary",
    "salário",
    "salaire",
    "Gehalt",
    "contract",
    "contrato",
    "contrat",
    "Vertrag",
    "candidate",
    "candidato",
    "candidat",
    "Bewerber",
    "job",
    "vaga",
    "poste",
    "Stelle",
    "experience",
    "experiência",
    "expérience",
    "Erfahrung",
    "resume",
    "currículo",
    "CV",
    "Lebenslauf",
    "availability",
    "disponibilidade",
    "disponibilité",
    "Verfügbarkeit",
    "tomorrow",
    "amanhã",
    "demain",
    "morgen",
    "monday",
    "segunda",
    "lundi",
    "Montag",
    "friday",
    "sexta",
    "vendredi",
    "Freitag",
    "morning",
    "manhã",
    "matin",
    "Morgen",
    "afternoon",
    "tarde",
    "après-midi",
    "Nachmittag",
    "office",
    "escritório",
    "bureau",
    "Büro",
    "remote",
    "remoto",
    "télétravail",
    "Homeoffice",
    "São Paulo",
    "Montréal",
    "München",
    "Zürich",
    "Bogotá",
    "Kraków",
    "Malmö",
    "booking",
    "reserva",
    "réservation",
    "Buchung",
    "shift",
    "turno",
    "équipe",
    "Schicht",
    "payment",
    "pagamento",
    "paiement",
    "Zahlung",
    "invoice",
    "fatura",
    "facture",
    "Rechnung",
    "address",
    "endereço",
    "adresse",
    "Adresse",
    "plumber",
    "encanador",
    "plombier",
    "Klempner",
    "electrician",
    "eletricista",
    "électricien",
    "Elektriker",
    "cleaning",
    "limpeza",
    "ménage",
    "Reinigung",
    "quote",
    "orçamento",
    "devis",
    "Angebot",
    "deadline",
    "prazo",
    "échéance",
    "Frist",
    "onboarding",
    "integração",
    "intégration",
    "Einarbeitung",
    "benefits",
    "benefícios",
    "avantages",
    "Leistungen",
    "visa",
    "relocation",
    "mudança",
    "déménagement",
    "Umzug",
    "portfolio",
    "reference",
    "referência",
    "référence",
    "Referenz",
    "certificate",
    "certificado",
    "certificat",
    "Zertifikat",
    "thanks",
    "obrigado",
    "merci",
    "danke",
    "please",
    "por favor",
    "s'il vous plaît",
    "bitte",
    "hello",
    "olá",
    "bonjour",
    "hallo",
    "the",
    "and",
    "for",
    "you",
    "we",
    "can",
    "will",
    "our",
    "your",
    "with",
    "at",
    "on",
    "de",
    "la",
    "le",
    "et",
    "und",
    "der",
    "die",
    "das",
    "é",
    "o",
    "a",
    "que",
    "para",
    "com",
];

pub async fn run(target: Arc<Target>, args: &SearchArgs, run_id: &str) -> anyhow::Result<Value> {
    let seeded = std::time::Instant::now();
    let searchers = seed(args).await?;
    let seed_secs = seeded.elapsed().as_secs();
    eprintln!("search: seeded in {seed_secs} s");
    let tokens: Arc<Vec<String>> = Arc::new(
        searchers
            .iter()
            .map(|id| target.token(id, "candidate"))
            .collect::<anyhow::Result<_>>()?,
    );
    for token in tokens.iter() {
        target.sign_in(token).await?;
    }

    let chat = chat::in_background(&target, &args.chat, args.duration, run_id).await;
    let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (latencies, errors) = open_loop(args.rate, Duration::from_secs(args.duration), |i| {
        let (target, tokens, hits) = (target.clone(), tokens.clone(), hits.clone());
        async move {
            let token = &tokens[(i as usize) % tokens.len()];
            let query = query(i);
            let url = target.url(&format!(
                "/chat/search?limit=20&q={}",
                parley::blobs::percent_encode(&query)
            ));
            let response = target.get_ok(url, token).await?;
            let page: Value = response.json().await.map_err(|_| "body".to_owned())?;
            let found = page["items"].as_array().map_or(0, Vec::len) as u64;
            hits.fetch_add(found, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    let chat_report = chat::background_report(chat).await?;
    println!(
        "\nsearch: {} inbox-wide searches/s for {} s by users with {} conversations, {} messages in the database{}",
        args.rate,
        args.duration,
        args.conversations,
        args.messages,
        chat::under_chat(args.chat.chat_rate)
    );
    println!("{}", crate::stats::header());
    println!("{}", latencies.row("search (20)"));
    let mean_hits =
        hits.load(std::sync::atomic::Ordering::Relaxed) as f64 / latencies.count().max(1) as f64;
    println!("hits per page (mean): {mean_hits:.1}");
    if !errors.is_empty() {
        println!("errors {errors:?}");
    }
    Ok(json!({
        "scenario": "search",
        "params": {"messages": args.messages, "searchers": args.searchers,
                   "conversations": args.conversations, "per_conversation": args.per_conversation,
                   "rate": args.rate, "duration_s": args.duration, "chat_rate": args.chat.chat_rate,
                   "chat_users": args.chat.chat_users},
        "seed_s": seed_secs,
        "search_latency": latencies.summary(),
        "mean_hits": mean_hits,
        "errors": errors,
        "chat": chat_report,
    }))
}

/// The `i`th query: one word, two words, or the start of a word as it is
/// being typed; every third one without its accents.
fn query(i: u64) -> String {
    // Meaningful words only (the vocabulary ends with its small words).
    let meaningful = VOCABULARY.len() - 30;
    let word = |n: u64| VOCABULARY[(n.wrapping_mul(2_654_435_761) % meaningful as u64) as usize];
    let text = match i % 3 {
        0 => word(i).to_owned(),
        1 => format!("{} {}", word(i), word(i / 3 + 7)),
        _ => word(i).chars().take(4).collect(),
    };
    if i % 3 == 2 {
        text
    } else if i.is_multiple_of(2) {
        text.replace(['ã', 'á'], "a")
            .replace(['é', 'è'], "e")
            .replace('ç', "c")
            .replace('ü', "u")
            .replace('ö', "o")
    } else {
        text
    }
}

/// Seeds the database; answers the searchers' ids.
async fn seed(args: &SearchArgs) -> anyhow::Result<Vec<String>> {
    let mut settings = parley::config::Settings::default();
    settings.database.url = parley::config::Secret::new(args.database_url.as_str());
    settings.database.timeout = Duration::from_secs(3600);
    settings.database.pool_size = 1;
    let pool = parley::persistence::connect_pool(&settings.database)?;
    let db = pool.get().await?;
    let searchers: Vec<String> = (1..=args.searchers)
        .map(|s| format!("{SEED}-s{s}"))
        .collect();
    let seeded: i64 = db
        .query_one(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE id = $1)
                    THEN (SELECT count(*) FROM messages) ELSE 0 END",
            &[&searchers[searchers.len() - 1]],
        )
        .await?
        .get(0);
    if seeded >= args.messages {
        eprintln!("search: the database holds {seeded} messages and the searchers already");
        return Ok(searchers);
    }
    let searcher_messages = args.searchers * args.conversations * args.per_conversation;
    let background = ((args.messages - searcher_messages).max(0) + 99) / 100;
    eprintln!(
        "search: seeding {} searchers x {} conversations x {} messages, and {background} background conversations x 100",
        args.searchers, args.conversations, args.per_conversation
    );
    db.batch_execute(
        "DROP INDEX IF EXISTS messages_search;
         CREATE TEMP TABLE seed (k bigint, id uuid, a text, b text, n bigint);",
    )
    .await?;
    db.execute(
        "INSERT INTO seed
         SELECT row_number() OVER (), gen_random_uuid(), a, b, n FROM (
             SELECT $1 || '-s' || s AS a, $1 || '-p' || s || '-' || c AS b, $2::bigint AS n
             FROM generate_series(1, $3::bigint) s, generate_series(1, $4::bigint) c
             UNION ALL
             SELECT $1 || '-b' || (2 * g), $1 || '-b' || (2 * g + 1), 100
             FROM generate_series(1, $5::bigint) g) pairs",
        &[
            &SEED,
            &args.per_conversation,
            &args.searchers,
            &args.conversations,
            &background,
        ],
    )
    .await?;
    db.batch_execute(
        "INSERT INTO users (id, display_name, role)
         SELECT a, 'Load ' || a, 'candidate' FROM seed UNION
         SELECT b, 'Load ' || b, 'recruiter' FROM seed
         ON CONFLICT (id) DO NOTHING;
         INSERT INTO conversations (id, kind, user_low, user_high, created_by, last_seq, last_message_at, created_at)
         SELECT id, 'direct', LEAST(a, b), GREATEST(a, b), a, n, now(), now() - interval '400 days' FROM seed;
         INSERT INTO conversation_participants (conversation_id, user_id, role_snapshot, activity_at)
         SELECT id, a, 'candidate', now() - (k % 1000) * interval '1 hour' FROM seed UNION ALL
         SELECT id, b, 'recruiter', now() - (k % 1000) * interval '1 hour' FROM seed;",
    )
    .await?;
    let conversations: i64 = db.query_one("SELECT count(*) FROM seed", &[]).await?.get(0);
    let words: Vec<&str> = VOCABULARY.to_vec();
    let chunk = 5_000;
    let mut from = 1;
    while from <= conversations {
        // Word w is drawn with a probability falling as 1/(w+1): a Zipf-like
        // skew, the small words at the end most common.
        db.execute(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_message_id, created_at)
             SELECT gen_random_uuid(), c.id, s, CASE WHEN s % 2 = 0 THEN c.b ELSE c.a END, 'text',
                    array_to_string(ARRAY(
                        SELECT ($1::text[])[cardinality($1::text[]) + 1
                            - floor(power(cardinality($1::text[]) + 1, random()))::int]
                        FROM generate_series(1, 6 + (s + c.k) % 7)), ' '),
                    'seed-' || c.k || '-' || s,
                    now() - (k % 1000) * interval '1 hour' - (c.n - s) * interval '1 minute'
             FROM seed c, generate_series(1, c.n) s
             WHERE c.k BETWEEN $2 AND $3",
            &[&words, &from, &(from + chunk - 1)],
        )
        .await?;
        from += chunk;
        eprintln!(
            "search: {} of {conversations} conversations filled",
            from.min(conversations + 1) - 1
        );
    }
    eprintln!("search: building the search index");
    // As a database in steady state would be: indexed, vacuumed, analysed
    // (an autovacuum of five million new rows would otherwise run through
    // the measurement).
    // One statement at a time: VACUUM refuses to run in a transaction.
    for statement in [
        "CREATE INDEX messages_search ON messages USING gin (search)",
        "VACUUM ANALYZE users",
        "VACUUM ANALYZE conversations",
        "VACUUM ANALYZE conversation_participants",
        "VACUUM ANALYZE messages",
    ] {
        db.batch_execute(statement).await?;
    }
    Ok(searchers)
}
