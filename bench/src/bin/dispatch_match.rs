//! Dispatcher benchmark (issue 4), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin dispatch_match [-- --quick]
//! ```
//!
//! Three figures, all on one core:
//!
//! 1. **Matching**: 100,000 definitions over 1,000 wikis (30 % of them with a page or
//!    user regex, the rest exact pages and users, some with flags, a few watching a whole
//!    wiki) in 10,000 subscriptions, against a varied stream of changes. Target
//!    500,000 changes/s.
//! 2. **Scaling**: the same mix at 1,000, 10,000, 100,000 and 1,000,000 definitions; the
//!    target is a cost per change at 1,000,000 within 2× of that at 1,000 (the index
//!    looks only at the change's wiki and its anchors, never at all definitions). The
//!    generator scales the page and user universes with the definitions so the share of
//!    changes that match stays about the same at every size.
//! 3. **Pipeline minus the bus**: EventStreams JSON → `parse_change` → `dispatch`
//!    (matching and rendering each matching subscription's format). Target 100,000
//!    changes/s.
//!
//! Rates are per CPU-second of the benchmark thread (the machine may be shared; time
//! another process takes from the core is not counted). It also reports how long loading takes and what one live `insert` of a new regex
//! costs on the loaded index (it recompiles one regex-set chunk of one wiki).
//! `--quick` uses smaller sizes and shorter runs, for a smoke test; `--size N` measures
//! only the matching at N definitions (for profiling one scale); `--scaling` only the
//! 1,000 versus 1,000,000 comparison.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flotilla_bench::{human, percentile, rate};
use flotilla_wikimedia_core::subscription::{Restored, SubscriptionBackend};
use flotilla_wikimedia_core::{
    Change, Definition, DefinitionFields, Limits, MatchScratch, OutputFormat, SubscriptionName, Subscriptions,
    TokenHash, Wiki, Wikis, parse_change,
};

const MATCH_TARGET: f64 = 500_000.0;
const PIPELINE_TARGET: f64 = 100_000.0;
const WATCHED_WIKIS: usize = 1_000;
const DEFINITIONS_PER_SUBSCRIPTION: usize = 10;
/// Definitions that watch a whole wiki, at every scale.
const WHOLE_WIKI: usize = 20;
/// Changes matched per call, as the node's matcher reads them off the bus (it reads up
/// to thousands at a time; the figure hardly depends on it beyond a few).
const MATCH_BATCH: usize = 256;

/// xorshift64*: deterministic, no dependency, plenty for choosing test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self) -> usize {
        self.below(100)
    }
}

/// How many whole-wiki definitions to make: about one in `one_in`, up to [`WHOLE_WIKI`].
struct WholeWiki {
    one_in: usize,
    made: usize,
}

/// Sizes of the page, user and pattern universes per wiki, derived from how many
/// definitions of each kind a wiki gets, so the hit rate does not depend on the scale.
struct Universe {
    pages: usize,
    users: usize,
    patterns: usize,
}

impl Universe {
    fn for_definitions(definitions: usize) -> Universe {
        let per_wiki = definitions as f64 / WATCHED_WIKIS as f64;
        let size = |share: f64| ((per_wiki * share * 4.0).ceil() as usize).max(1);
        Universe { pages: size(0.45), users: size(0.25), patterns: size(0.15) }
    }
}

fn definition(
    wiki: Wiki,
    page: Option<String>,
    page_rx: Option<String>,
    user: Option<String>,
    user_rx: Option<String>,
    flags: &[&str],
) -> Definition {
    let fields = DefinitionFields {
        wiki: wiki.dbname().to_string(),
        page,
        page_rx,
        user,
        user_rx,
        flags: flags.iter().map(|f| f.to_string()).collect(),
    };
    Definition::new(Wikis::embedded(), &fields).expect("generated definitions are valid")
}

/// One definition of the mix: 40 % exact page, 25 % exact user, 15 % page regex, 10 %
/// user regex, 5 % exact page with a user regex (so 30 % carry a regex), 5 % exact
/// page with flags; a fifth have a flag. About [`WHOLE_WIKI`] watch their whole wiki,
/// at every scale, so the number of those matching every change on their wiki does not
/// grow with the scale (with a fixed share, they alone would add matches per change as
/// the definitions grow, which measures the output, not the index).
fn random_definition(rng: &mut Rng, wikis: &[Wiki], universe: &Universe, whole_wiki: &mut WholeWiki) -> Definition {
    let wiki = wikis[rng.below(wikis.len())];
    let page = |rng: &mut Rng| Some(format!("Page {:06}", rng.below(universe.pages)));
    let user = |rng: &mut Rng| Some(format!("User{:06}", rng.below(universe.users)));
    let page_rx = |rng: &mut Rng| {
        let k = rng.below(universe.patterns);
        Some(match rng.below(3) {
            0 => format!("^Talk:Topic {k:06}/"),
            1 => format!("Project {k:06}$"),
            _ => format!("^Draft:Item {k:06}\\b"),
        })
    };
    let user_rx = |rng: &mut Rng| {
        let k = rng.below(universe.patterns);
        Some(match rng.below(2) {
            0 => format!("^Bot{k:06}\\d*$"),
            _ => format!("^(?:Script|Tool){k:06}$"),
        })
    };
    const FLAG_SETS: [&[&str]; 4] = [&["bot"], &["nobot"], &["nominor"], &["new"]];
    let flags: &[&str] = if rng.percent() < 20 { FLAG_SETS[rng.below(4)] } else { &[] };
    if rng.below(whole_wiki.one_in) == 0 && whole_wiki.made < WHOLE_WIKI {
        whole_wiki.made += 1;
        return definition(wiki, None, None, None, None, flags);
    }
    match rng.percent() {
        0..40 => definition(wiki, page(rng), None, None, None, flags),
        40..65 => definition(wiki, None, None, user(rng), None, flags),
        65..80 => definition(wiki, None, page_rx(rng), None, None, flags),
        80..90 => definition(wiki, None, None, None, user_rx(rng), flags),
        90..95 => definition(wiki, page(rng), None, None, user_rx(rng), flags),
        _ => definition(wiki, page(rng), None, None, None, &["nobot", "nominor"]),
    }
}

/// The title, user and type of one change, drawn so that some changes hit exact pages,
/// users and patterns and most hit nothing, as on the live stream. Numbers in names are
/// zero-padded so that no generated literal is a prefix of another: otherwise a title
/// would contain more pattern literals the more patterns there are ("Project 427"
/// contains "Project 4" and "Project 42"), a quirk of numbering, not of real titles.
struct ChangeParts {
    wiki: &'static str,
    title: String,
    user: String,
    kind: &'static str,
    bot: bool,
    minor: bool,
    canary: bool,
}

fn random_change(rng: &mut Rng, watched: &[Wiki], others: &[Wiki], universe: &Universe) -> ChangeParts {
    let wiki = if rng.percent() < 5 { others[rng.below(others.len())] } else { watched[rng.below(watched.len())] };
    let k = rng.below(universe.patterns);
    let title = match rng.percent() {
        0..45 => format!("Page {:06}", rng.below(universe.pages)),
        45..55 => format!("Talk:Topic {k:06}/Archive {}", rng.below(9)),
        55..62 => format!("Wikipedia:Project {k:06}"),
        62..67 => format!("Draft:Item {k:06} (2026 film)"),
        _ => format!("Some article about subject number {}", rng.next() % 1_000_000),
    };
    let user = match rng.percent() {
        0..40 => format!("User{:06}", rng.below(universe.users)),
        40..55 => format!("Bot{:06}{}", rng.below(universe.patterns), rng.below(10)),
        55..60 => format!("Tool{:06}", rng.below(universe.patterns)),
        _ => format!("2001:db8::{:x}", rng.next() % 65_536),
    };
    let kind = match rng.percent() {
        0..80 => "edit",
        80..90 => "new",
        90..97 => "log",
        _ => "categorize",
    };
    ChangeParts {
        wiki: wiki.dbname(),
        title,
        user,
        kind,
        bot: rng.percent() < 30,
        minor: rng.percent() < 40,
        canary: rng.below(1000) == 0,
    }
}

/// The change as EventStreams publishes it (fields as in the recorded events).
fn event_json(parts: &ChangeParts, n: u64) -> String {
    let host = Wikis::embedded().by_dbname(parts.wiki).map_or("example.org", |w| w.host());
    let domain = if parts.canary { "canary" } else { host };
    let (log, lengths) = if parts.kind == "log" {
        (r#","log_id":161650906,"log_type":"delete","log_action":"delete","log_params":[],"log_action_comment":"deleted &quot;[[X]]&quot;""#.to_string(), String::new())
    } else {
        let old = 1000 + n % 5000;
        let new = old + n % 300;
        let old_part = if parts.kind == "new" { String::new() } else { format!(r#""old":{old},"#) };
        (
            String::new(),
            format!(
                r#","length":{{{old_part}"new":{new}}},"revision":{{"old":{},"new":{}}}"#,
                2_000_000 + n,
                2_000_001 + n
            ),
        )
    };
    format!(
        concat!(
            r#"{{"$schema":"/mediawiki/recentchange/1.0.0","meta":{{"uri":"https://{host}/wiki/X","request_id":"4fb8ad55-a01f-4354-85e9-0676d2584ecb","#,
            r#""id":"d5bf4701-791c-40a8-b3f6-c450f961476b","dt":"2024-04-26T00:00:53Z","domain":"{domain}","stream":"mediawiki.recentchange","#,
            r#""topic":"eqiad.mediawiki.recentchange","partition":0,"offset":{n}}},"id":{id},"type":"{kind}","namespace":0,"title":"{title}","#,
            r#""title_url":"https://{host}/wiki/X","comment":"/* section */ copyedit, see [[Talk:{title}|talk]] \"quoted\"","timestamp":1714089653,"#,
            r#""user":"{user}","bot":{bot},"minor":{minor},"patrolled":true{lengths}{log},"server_url":"https://{host}","server_name":"{host}","#,
            r#""server_script_path":"/w","wiki":"{wiki}","parsedcomment":"<span dir=\"auto\"><span class=\"autocomment\">section</span></span> copyedit"}}"#
        ),
        host = host,
        domain = domain,
        n = n,
        id = 1_769_695_961 + n,
        kind = parts.kind,
        title = parts.title,
        user = parts.user,
        bot = parts.bot,
        minor = parts.minor,
        lengths = lengths,
        log = log,
        wiki = parts.wiki,
    )
}

/// A loaded state with `definitions` definitions and its universe.
fn load(definitions: usize, watched: &[Wiki], universe: &Universe, seed: u64) -> (Subscriptions, Duration, Duration) {
    let mut rng = Rng(seed);
    let mut whole_wiki = WholeWiki { one_in: (definitions / WHOLE_WIKI).max(1), made: 0 };
    let started = Instant::now();
    let subscriptions = definitions.div_ceil(DEFINITIONS_PER_SUBSCRIPTION);
    let rows: Vec<Restored> = (0..subscriptions)
        .map(|n| Restored {
            name: SubscriptionName::parse(&format!("bench-{n}")).expect("valid name"),
            token_hash: TokenHash::of("BENCH"),
            format: OutputFormat::ALL[n % 3],
            definitions: (0..DEFINITIONS_PER_SUBSCRIPTION.min(definitions - n * DEFINITIONS_PER_SUBSCRIPTION))
                .map(|_| random_definition(&mut rng, watched, universe, &mut whole_wiki))
                .collect(),
        })
        .collect();
    let generated = started.elapsed();
    // More subscriptions and compiled patterns than the node's default caps allow: the
    // benchmark measures the index, not the caps.
    let mut state = Subscriptions::new(Wikis::embedded()).with_limits(Limits::UNLIMITED);
    let started = Instant::now();
    state.restore_all(rows).expect("unique names");
    (state, generated, started.elapsed())
}

/// Generated events, one JSON object each, kept in one buffer so that reading the
/// stream costs the same however the heap looks after loading a big index.
struct Stream {
    text: String,
    events: Vec<std::ops::Range<usize>>,
}

impl Stream {
    fn generate(count: usize, watched: &[Wiki], others: &[Wiki], universe: &Universe, seed: u64) -> Stream {
        let mut rng = Rng(seed);
        let mut text = String::new();
        let mut events = Vec::with_capacity(count);
        for n in 0..count {
            let start = text.len();
            text.push_str(&event_json(&random_change(&mut rng, watched, others, universe), n as u64));
            events.push(start..text.len());
        }
        Stream { text, events }
    }

    fn events(&self) -> impl Iterator<Item = &[u8]> {
        self.events.iter().map(|range| &self.text.as_bytes()[range.clone()])
    }

    /// The changes, parsed once into compact owned values. Made before the index is
    /// loaded, so their few small strings sit together on the heap at every scale.
    fn changes(&self) -> Vec<Change<'static>> {
        self.events().map(|event| parse_change(event).expect("generated events parse").into_owned()).collect()
    }
}

/// CPU time this thread has used, from `/proc/thread-self/stat` (utime + stime, in
/// USER_HZ ticks, which is 100 on Linux). The machine is shared, so rates are taken
/// per CPU-second of this thread rather than per wall-clock second: another process
/// taking the core must not count against the index.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name in parentheses may hold spaces; fields count from after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// A clock for one measurement: thread CPU time where available, else wall time.
struct Clock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Clock {
    fn start() -> Clock {
        Clock { wall: Instant::now(), cpu: thread_cpu_time() }
    }

    /// Wall time, to decide when to stop.
    fn wall(&self) -> Duration {
        self.wall.elapsed()
    }

    /// CPU time used since the start (wall time if CPU time is unavailable).
    fn used(&self) -> Duration {
        match (self.cpu, thread_cpu_time()) {
            (Some(start), Some(now)) if now > start => now - start,
            _ => self.wall.elapsed(),
        }
    }
}

/// Matches the stream repeatedly for about `run`; returns (changes per CPU-second,
/// matches per change).
fn measure_matching(state: &Subscriptions, changes: &[Change<'static>], run: Duration) -> (f64, f64) {
    let mut scratch = MatchScratch::default();
    let mut matches = 0usize;
    state.matching_each(changes, &mut scratch, |_, found| {
        black_box(found);
    });
    let clock = Clock::start();
    let mut done = 0u64;
    while clock.wall() < run {
        // In batches, as the node's matcher takes them off the bus.
        for batch in changes.chunks(MATCH_BATCH) {
            state.matching_each(black_box(batch), &mut scratch, |_, found| matches += black_box(found).len());
        }
        done += changes.len() as u64;
    }
    (rate(done, clock.used()), matches as f64 / done as f64)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run = if quick { Duration::from_millis(300) } else { Duration::from_secs(2) };
    let main_size = if quick { 20_000 } else { 100_000 };
    let big_size = if quick { 100_000 } else { 1_000_000 };
    let stream = if quick { 20_000 } else { 200_000 };
    // `--size N`: only the matching figure at N definitions (for profiling one scale).
    let only_size = std::env::args()
        .skip_while(|a| a != "--size")
        .nth(1)
        .map(|n| n.parse::<usize>().expect("--size takes a number of definitions"));

    let all: Vec<Wiki> = Wikis::embedded().iter().collect();
    let (watched, others) = all.split_at(WATCHED_WIKIS.min(all.len() - 1));
    println!(
        "dispatch_match: {} wikis known, {} watched; {DEFINITIONS_PER_SUBSCRIPTION} definitions per subscription; one core",
        all.len(),
        watched.len()
    );

    if std::env::args().any(|a| a == "--scaling") {
        scaling(&[1_000, big_size], watched, others, stream, run);
        return;
    }
    if let Some(size) = only_size {
        let (state, changes, _) = prepare(size, watched, others, stream, SCALING_SEEDS);
        let (per_second, per_change) = measure_matching(&state, &changes, run * 3);
        println!("match, {size} definitions: {:.0} ns/change, {per_change:.2} matching/change", 1e9 / per_second);
        return;
    }

    // 1. Matching at the main size.
    let (state, matching_changes, universe) = prepare(main_size, watched, others, stream, (11, 7));
    println!("  {} subscriptions, {} wikis watched", state.len(), state.index().watched_wikis());
    let (per_second, per_change) = measure_matching(&state, &matching_changes, run);
    println!(
        "match, {main_size} definitions: {}changes/s ({:.0} ns/change, {per_change:.2} matching subscriptions/change) target {}changes/s: {}",
        human(per_second),
        1e9 / per_second,
        human(MATCH_TARGET),
        if per_second >= MATCH_TARGET { "met" } else { "MISSED" }
    );

    // Live insert of one new regex on the loaded index.
    let mut state = state;
    let mut samples = Vec::new();
    let mut rng = Rng(99);
    let name = SubscriptionName::parse("bench-live").expect("valid");
    let id = state.subscribe(name, None).expect("new name").id;
    for n in 0..50 {
        let wiki = watched[rng.below(watched.len())];
        let new = definition(wiki, None, Some(format!("^Live {n} .*$")), None, None, &[]);
        let started = Instant::now();
        state.insert(id, vec![new]).expect("under the cap");
        samples.push(started.elapsed());
    }
    println!(
        "live insert of a new page regex: p50 {:?}, max {:?}",
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 100.0)
    );

    // 3. The pipeline minus the bus, on the main state.
    let events = Stream::generate(stream, watched, others, &universe, 13);
    let mut scratch = MatchScratch::default();
    let clock = Clock::start();
    let mut done = 0u64;
    let mut delivered = 0usize;
    let mut payload_bytes = 0usize;
    while clock.wall() < run {
        for event in events.events() {
            let change = parse_change(black_box(event)).expect("generated events parse");
            for delivery in state.dispatch(&change, &mut scratch) {
                delivered += 1;
                payload_bytes += black_box(delivery).payload.len();
            }
        }
        done += events.events.len() as u64;
    }
    let pipeline = rate(done, clock.used());
    println!(
        "pipeline parse+match+format ({} B/event avg): {}changes/s, {:.2} deliveries/change ({:.0} B each) target {}changes/s: {}",
        events.text.len() / events.events.len(),
        human(pipeline),
        delivered as f64 / done as f64,
        payload_bytes as f64 / delivered.max(1) as f64,
        human(PIPELINE_TARGET),
        if pipeline >= PIPELINE_TARGET { "met" } else { "MISSED" }
    );
    drop(state);

    scaling(&[1_000, 10_000, main_size, big_size], watched, others, stream, run);
}

/// Seeds of the change stream and of the definitions for the scaling figures.
const SCALING_SEEDS: (u64, u64) = (23, 21);

/// A loaded state with `size` definitions and `stream` parsed changes for it, drawn
/// with `seeds` (changes, definitions); prints how long loading took.
fn prepare(
    size: usize,
    watched: &[Wiki],
    others: &[Wiki],
    stream: usize,
    (change_seed, definition_seed): (u64, u64),
) -> (Subscriptions, Vec<Change<'static>>, Universe) {
    let universe = Universe::for_definitions(size);
    let changes = Stream::generate(stream, watched, others, &universe, change_seed).changes();
    let (state, generated, loaded) = load(size, watched, &universe, definition_seed);
    println!(
        "load {size} definitions: generate+validate {:.2} s, restore_all (index build) {:.2} s",
        generated.as_secs_f64(),
        loaded.as_secs_f64()
    );
    (state, changes, universe)
}

/// Figure 2: the same mix at each of `sizes` (the first the smallest, the last the
/// biggest). All are loaded first and then measured in interleaved rounds, and each
/// figure is the median over the rounds: on a shared machine the speed drifts over
/// seconds, and interleaving makes the drift fall on every size alike rather than on
/// whichever ran last.
fn scaling(sizes: &[usize], watched: &[Wiki], others: &[Wiki], stream: usize, run: Duration) {
    const ROUNDS: usize = 7;
    let loaded: Vec<(usize, Subscriptions, Vec<Change<'static>>)> = sizes
        .iter()
        .map(|&size| {
            let (state, changes, _) = prepare(size, watched, others, stream, SCALING_SEEDS);
            (size, state, changes)
        })
        .collect();
    // costs[size][round], in ns per change.
    let mut costs = vec![Vec::new(); sizes.len()];
    let mut matching = vec![0.0; sizes.len()];
    for _ in 0..ROUNDS {
        for (n, (_, state, changes)) in loaded.iter().enumerate() {
            let (per_second, per_change) = measure_matching(state, changes, run / 3);
            costs[n].push(1e9 / per_second);
            matching[n] = per_change;
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    for (n, (size, _, _)) in loaded.iter().enumerate() {
        let cost = median(&costs[n]);
        println!(
            "match, {size} definitions: {}changes/s ({cost:.0} ns/change, {:.2} matching/change; rounds {})",
            human(1e9 / cost),
            matching[n],
            costs[n].iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" ")
        );
    }
    let ratio_of = |big: usize, small: usize| {
        let ratios: Vec<f64> = costs[big].iter().zip(&costs[small]).map(|(b, s)| b / s).collect();
        median(&ratios)
    };
    let (biggest, smallest) = (sizes.len() - 1, 0);
    let ratio = ratio_of(biggest, smallest);
    println!(
        "per-change cost, {} vs {} definitions: {ratio:.2}x (median of {ROUNDS} interleaved rounds; target within 2x): {}; {} vs {}: {:.2}x",
        sizes[biggest],
        sizes[smallest],
        if ratio <= 2.0 { "met" } else { "MISSED" },
        sizes[biggest],
        sizes[biggest.saturating_sub(1)],
        ratio_of(biggest, biggest.saturating_sub(1))
    );
}
