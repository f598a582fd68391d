//! The matching index: the rules of SPEC §6.1 case by case, delivery through
//! `Subscriptions::dispatch`, and a model test that compares the index with the rules
//! applied naively to every definition after random inserts and removals.

use std::collections::BTreeSet;

use flotilla_wikimedia_core::subscription::SubscriptionBackend;
use flotilla_wikimedia_core::{
    Change, Definition, DefinitionFields, Index, MatchScratch, OutputFormat, SubscriptionId, SubscriptionName,
    Subscriptions, Wikis, parse_change,
};
use proptest::prelude::*;

fn definition(wiki: &str, page: &str, page_rx: &str, user: &str, user_rx: &str, flags: &[&str]) -> Definition {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Definition::new(
        Wikis::embedded(),
        &DefinitionFields {
            wiki: wiki.to_string(),
            page: some(page),
            page_rx: some(page_rx),
            user: some(user),
            user_rx: some(user_rx),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        },
    )
    .expect("test definitions are valid")
}

fn change(json: &str) -> Change<'static> {
    parse_change(json.as_bytes()).expect("test change parses").into_owned()
}

/// A state with subscriptions named `s1`, `s2`, … and returns their ids.
fn state(count: usize) -> (Subscriptions, Vec<SubscriptionId>) {
    let mut state = Subscriptions::new(Wikis::embedded());
    let ids = (1..=count)
        .map(|n| {
            let name = SubscriptionName::parse(&format!("s{n}")).expect("valid name");
            state.subscribe(name, None).expect("new name").id
        })
        .collect();
    (state, ids)
}

/// The names of the subscriptions that match, sorted.
fn matched(state: &Subscriptions, change: &Change<'_>) -> Vec<String> {
    let mut scratch = MatchScratch::default();
    let mut names: Vec<String> =
        state.matching(change, &mut scratch).iter().map(|id| state.name(*id).expect("known id").to_string()).collect();
    names.sort();
    names
}

#[test]
fn exact_page_and_user_are_case_sensitive_and_per_wiki() {
    let (mut state, ids) = state(2);
    state.insert(ids[0], vec![definition("enwiki", "Main Page", "", "", "", &[])]).expect("insert");
    state.insert(ids[1], vec![definition("dewiki", "", "", "Alice", "", &[])]).expect("insert");
    let check = |json: &str, expect: &[&str]| {
        assert_eq!(matched(&state, &change(json)), expect, "{json}");
    };
    check(r#"{"wiki":"enwiki","title":"Main Page","user":"Alice"}"#, &["s1"]);
    check(r#"{"wiki":"enwiki","title":"main Page","user":"Alice"}"#, &[]);
    check(r#"{"wiki":"enwiki","title":"Main Page ","user":"Alice"}"#, &[]);
    check(r#"{"wiki":"dewiki","title":"Main Page","user":"Alice"}"#, &["s2"]);
    check(r#"{"wiki":"dewiki","title":"X","user":"alice"}"#, &[]);
    check(r#"{"wiki":"frwiki","title":"Main Page","user":"Alice"}"#, &[]);
    check(r#"{"title":"Main Page","user":"Alice"}"#, &[]);
}

#[test]
fn regexes_are_unanchored_unless_anchored() {
    let (mut state, ids) = state(3);
    state.insert(ids[0], vec![definition("enwiki", "", "Talk:", "", "", &[])]).expect("insert");
    state.insert(ids[1], vec![definition("enwiki", "", "^Talk:", "", "", &[])]).expect("insert");
    state.insert(ids[2], vec![definition("enwiki", "", "", "", "[Bb]ot$", &[])]).expect("insert");
    let check = |title: &str, user: &str, expect: &[&str]| {
        let json = format!(r#"{{"wiki":"enwiki","title":"{title}","user":"{user}"}}"#);
        assert_eq!(matched(&state, &change(&json)), expect, "{json}");
    };
    check("Talk:Foo", "Alice", &["s1", "s2"]);
    check("User Talk:Foo", "Alice", &["s1"]);
    check("User talk:Foo", "Alice", &[]);
    check("X", "CleanupBot", &["s3"]);
    check("Talk:X", "Robot", &["s1", "s2", "s3"]);
    check("X", "Bots", &[]);
}

#[test]
fn flags_must_all_hold() {
    let (mut state, ids) = state(6);
    let flag_sets: [&[&str]; 6] = [&["bot"], &["nobot"], &["minor"], &["nominor", "nobot"], &["new"], &["log"]];
    for (id, flags) in ids.iter().zip(flag_sets) {
        state.insert(*id, vec![definition("enwiki", "", "", "", "", flags)]).expect("insert");
    }
    let check = |json: &str, expect: &[&str]| {
        assert_eq!(matched(&state, &change(json)), expect, "{json}");
    };
    check(r#"{"wiki":"enwiki","type":"edit","bot":true,"minor":true}"#, &["s1", "s3"]);
    check(r#"{"wiki":"enwiki","type":"edit","bot":false,"minor":false}"#, &["s2", "s4"]);
    check(r#"{"wiki":"enwiki","type":"new","bot":true}"#, &["s1", "s5"]);
    check(r#"{"wiki":"enwiki","type":"log"}"#, &["s2", "s4", "s6"]);
    check(r#"{"wiki":"enwiki","type":"categorize","bot":false,"minor":true}"#, &["s2", "s3"]);
}

#[test]
fn combined_parts_must_all_hold() {
    let (mut state, ids) = state(3);
    state.insert(ids[0], vec![definition("enwiki", "Main Page", "", "", "^Ad", &[])]).expect("insert");
    state.insert(ids[1], vec![definition("enwiki", "", "^Talk:", "Bob", "", &["minor"])]).expect("insert");
    state.insert(ids[2], vec![definition("enwiki", "", "^Talk:", "", "^B", &[])]).expect("insert");
    let check = |title: &str, user: &str, minor: bool, expect: &[&str]| {
        let json = format!(r#"{{"wiki":"enwiki","title":"{title}","user":"{user}","minor":{minor}}}"#);
        assert_eq!(matched(&state, &change(&json)), expect, "{json}");
    };
    check("Main Page", "Admin", false, &["s1"]);
    check("Main Page", "Bob", false, &[]);
    check("Talk:X", "Bob", true, &["s2", "s3"]);
    check("Talk:X", "Bob", false, &["s3"]);
    check("Talk:X", "Bobby", true, &["s3"]);
    check("Talk:X", "Carol", true, &[]);
}

#[test]
fn a_change_is_delivered_once_per_subscription() {
    let (mut state, ids) = state(2);
    let many = vec![
        definition("enwiki", "Main Page", "", "", "", &[]),
        definition("enwiki", "", "Main", "", "", &[]),
        definition("enwiki", "", "Page$", "", "", &[]),
        definition("enwiki", "", "", "Alice", "", &[]),
        definition("enwiki", "", "", "", "lic", &[]),
        definition("enwiki", "", "", "", "", &[]),
    ];
    state.insert(ids[0], many).expect("insert");
    state.insert(ids[1], vec![definition("enwiki", "", "", "", "", &["bot"])]).expect("insert");
    let edit = change(r#"{"wiki":"enwiki","title":"Main Page","user":"Alice","type":"edit"}"#);
    assert_eq!(matched(&state, &edit), ["s1"]);

    let mut scratch = MatchScratch::default();
    let deliveries = state.dispatch(&edit, &mut scratch);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].subscription.as_str(), "s1");
    assert_eq!(&*deliveries[0].payload, "enwiki|Main Page|Alice|edit||||");
}

#[test]
fn dispatch_renders_each_format_once_and_skips_canaries() {
    let (mut state, ids) = state(3);
    for id in &ids {
        state.insert(*id, vec![definition("enwiki", "", "", "", "", &[])]).expect("insert");
    }
    state.set_format(ids[1], OutputFormat::Json).expect("exists");
    state.set_format(ids[2], OutputFormat::Json).expect("exists");
    let edit = change(r#"{"wiki":"enwiki","title":"T","user":"U","type":"edit","id":7}"#);
    let mut scratch = MatchScratch::default();
    let deliveries = state.dispatch(&edit, &mut scratch);
    let names: Vec<&str> = deliveries.iter().map(|d| d.subscription.as_str()).collect();
    assert_eq!(names, ["s1", "s2", "s3"]);
    assert_eq!(&*deliveries[0].payload, "enwiki|T|U|edit||7||");
    assert!(deliveries[1].payload.starts_with('{'));
    assert!(std::sync::Arc::ptr_eq(&deliveries[1].payload, &deliveries[2].payload));

    let canary = change(r#"{"wiki":"enwiki","title":"T","user":"U","meta":{"domain":"canary"}}"#);
    assert!(state.dispatch(&canary, &mut scratch).is_empty());
}

#[test]
fn recorded_events_match_definitions_for_them() {
    let (mut state, ids) = state(3);
    state.insert(ids[0], vec![definition("ko.wikipedia.org", "", "^사용자:", "廢后", "", &["nobot"])]).expect("insert");
    state.insert(ids[1], vec![definition("www.wikidata.org", "", "", "", "[Bb]ot$", &["bot", "new"])]).expect("insert");
    state.insert(ids[2], vec![definition("en_wikipedia", "", "^Category talk:", "", "", &["log"])]).expect("insert");
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../testdata/wikimedia");
    let read = |file: &str| std::fs::read(dir.join(file)).expect("recording readable");
    let check = |file: &str, expect: &[&str]| {
        let bytes = read(file);
        let change = parse_change(&bytes).expect("parses");
        assert_eq!(matched(&state, &change), expect, "{file}");
    };
    check("05_edit_kowiki_2021-09-14.json", &["s1"]);
    check("04_new_wikidata_2020-02-02.json", &["s2"]);
    check("07_edit-with-notify_url_wikidata_2024-04-26.json", &[]);
    check("06_log-delete_enwiki_2024-04-26.json", &["s3"]);
    check("02_edit_wikidata_2020-02-02.json", &[]);
}

#[test]
fn many_patterns_across_chunks_stay_exact_under_removal() {
    let mut index = Index::new();
    // Ids come from subscribing; a throwaway state hands one out.
    let owner = state(1).1[0];
    let patterns: Vec<Definition> =
        (0..300).map(|n| definition("enwiki", "", &format!("^P{n}$"), "", "", &[])).collect();
    assert_eq!(index.insert(owner, patterns.clone()).len(), 300);
    assert_eq!(index.insert(owner, patterns.clone()).len(), 0, "duplicates");
    let hits = |index: &Index, n: usize| {
        let json = format!(r#"{{"wiki":"enwiki","title":"P{n}"}}"#);
        let mut scratch = MatchScratch::default();
        index.matching(&change(&json), &mut scratch).len()
    };
    assert!((0..300).all(|n| hits(&index, n) == 1));
    let removed: Vec<Definition> = patterns.iter().step_by(3).cloned().collect();
    assert_eq!(index.remove(owner, &removed).len(), 100);
    for n in 0..300 {
        assert_eq!(hits(&index, n), usize::from(n % 3 != 0), "P{n}");
    }
    assert_eq!(index.len(), 200);
    assert_eq!(index.remove_subscription(owner).len(), 200);
    assert!(index.is_empty());
    assert_eq!(index.watched_wikis(), 0);
    assert_eq!(hits(&index, 1), 0);
}

// ---- Model test ----------------------------------------------------------------------

const WIKIS: [&str; 2] = ["enwiki", "dewiki"];
const TITLES: [&str; 6] = ["A", "Ab", "Talk:A", "P1", "P2", "P140"];
const USERS: [&str; 4] = ["X", "Y", "Bot1", "bot"];
const PATTERNS: [&str; 7] = ["^A", "b$", "Talk", "^Bot\\d", ".", "^P1", "^P\\d+$"];
const FLAGS: [&str; 6] = ["bot", "nobot", "minor", "nominor", "new", "log"];
const KINDS: [&str; 4] = ["edit", "new", "log", "categorize"];

fn optional(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), proptest::sample::select(values).prop_map(str::to_string)]
}

fn any_definition() -> impl Strategy<Value = Definition> {
    (
        proptest::sample::select(&WIKIS[..]),
        optional(&TITLES),
        // Numbered patterns push some wikis past one regex-set chunk.
        prop_oneof![optional(&PATTERNS), (0..300usize).prop_map(|n| format!("^P{n}$"))],
        optional(&USERS),
        optional(&PATTERNS),
        proptest::sample::subsequence(&FLAGS[..], 0..=2),
    )
        .prop_map(|(wiki, page, page_rx, user, user_rx, flags)| {
            definition(wiki, &page, &page_rx, &user, &user_rx, &flags)
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, Vec<Definition>),
    Remove(usize, Vec<Definition>),
    RemoveAll(usize),
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, proptest::collection::vec(any_definition(), 1..30)).prop_map(|(s, d)| Op::Insert(s, d)),
        2 => (0..4usize, proptest::collection::vec(any_definition(), 1..30)).prop_map(|(s, d)| Op::Remove(s, d)),
        1 => (0..4usize).prop_map(Op::RemoveAll),
    ]
}

fn any_change() -> impl Strategy<Value = Change<'static>> {
    (
        proptest::sample::select(&WIKIS[..]),
        prop_oneof![
            proptest::sample::select(&TITLES[..]).prop_map(str::to_string),
            (0..300usize).prop_map(|n| format!("P{n}")),
        ],
        proptest::sample::select(&USERS[..]),
        proptest::sample::select(&KINDS[..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(wiki, title, user, kind, bot, minor)| {
            change(&format!(
                r#"{{"wiki":"{wiki}","title":"{title}","user":"{user}","type":"{kind}","bot":{bot},"minor":{minor}}}"#
            ))
        })
}

/// The rules of SPEC §6.1, applied to one definition directly.
fn naive_matches(definition: &Definition, change: &Change<'_>) -> bool {
    let title = change.title.as_deref().unwrap_or("");
    let user = change.user.as_deref().unwrap_or("");
    let flags = definition.flags();
    let has = |name: &str| flags.names().any(|n| n == name);
    definition.wiki().dbname() == change.wiki
        && definition.page().is_none_or(|p| **p == *title)
        && definition.user().is_none_or(|u| **u == *user)
        && definition.page_rx().is_none_or(|rx| rx.is_match(title))
        && definition.user_rx().is_none_or(|rx| rx.is_match(user))
        && (!has("bot") || change.bot)
        && (!has("nobot") || !change.bot)
        && (!has("minor") || change.minor)
        && (!has("nominor") || !change.minor)
        && (!has("new") || change.is_new())
        && (!has("log") || change.is_log())
}

/// What to do with the compilation each operation leaves when the index defers
/// compiling: run and install it at once, or keep it and install it later, after other
/// operations (when some of it is stale and must be ignored).
#[derive(Debug, Clone, Copy)]
enum Deferral {
    InstallNow,
    KeepForLater,
}

/// Runs `ops` on a fresh state and the model; with `deferrals`, the index defers
/// compiling and each operation's compilation is handled as its deferral says (kept
/// ones are installed at the end, newest first). Checks the listings after each
/// operation, and matching (against the rules) and the pattern memory (against an
/// index built at once from the final definitions) at the end, and, with deferrals,
/// matching also before the kept compilations are installed.
fn run_model(ops: Vec<Op>, changes: &[Change<'static>], deferrals: Option<Vec<Deferral>>) -> Result<(), TestCaseError> {
    let (mut state, ids) = state(4);
    if deferrals.is_some() {
        state.defer_compiling();
    }
    let mut kept = Vec::new();
    let mut model: Vec<BTreeSet<Definition>> = vec![BTreeSet::new(); 4];
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert(s, definitions) => {
                let expect = definitions.iter().filter(|d| !model[s].contains(*d)).collect::<BTreeSet<_>>().len();
                let applied = state.insert(ids[s], definitions.clone()).expect("under the cap");
                prop_assert_eq!(applied.count, expect);
                model[s].extend(definitions);
            }
            Op::Remove(s, definitions) => {
                let expect = definitions.iter().filter(|d| model[s].contains(*d)).collect::<BTreeSet<_>>().len();
                let applied = state.remove(ids[s], definitions.clone()).expect("exists");
                prop_assert_eq!(applied.count, expect);
                for d in &definitions {
                    model[s].remove(d);
                }
            }
            Op::RemoveAll(s) => {
                let all = state.definitions(ids[s]).expect("exists");
                state.remove(ids[s], all).expect("exists");
                model[s].clear();
            }
        }
        if let Some(deferrals) = &deferrals {
            let compilation = state.take_compilation();
            match deferrals[n % deferrals.len()] {
                Deferral::InstallNow => state.install(compilation.run()),
                Deferral::KeepForLater => kept.push(compilation),
            }
        } else {
            prop_assert!(state.take_compilation().is_empty(), "an index that compiles at once leaves nothing");
        }
        for (s, defs) in model.iter().enumerate() {
            let listed = state.definitions(ids[s]).expect("exists");
            prop_assert_eq!(listed, defs.iter().cloned().collect::<Vec<_>>());
        }
    }
    check_matching(&state, &ids, &model, changes)?;
    for compilation in kept.into_iter().rev() {
        state.install(compilation.run());
    }
    check_matching(&state, &ids, &model, changes)?;
    let mut fresh = Index::new();
    fresh.insert_all(model.iter().zip(&ids).flat_map(|(defs, &id)| defs.iter().map(move |d| (id, d.clone()))));
    prop_assert_eq!(state.index().pattern_memory(), fresh.pattern_memory());
    for &id in &ids {
        prop_assert_eq!(state.index().pattern_memory_of(id), fresh.pattern_memory_of(id));
    }
    Ok(())
}

/// Matching one change at a time and in batches gives what the rules say.
fn check_matching(
    state: &Subscriptions,
    ids: &[SubscriptionId],
    model: &[BTreeSet<Definition>],
    changes: &[Change<'static>],
) -> Result<(), TestCaseError> {
    let mut scratch = MatchScratch::default();
    let mut wanted = Vec::new();
    for change in changes {
        let got: Vec<SubscriptionId> = state.matching(change, &mut scratch).to_vec();
        let want: Vec<SubscriptionId> =
            (0..4).filter(|&s| model[s].iter().any(|d| naive_matches(d, change))).map(|s| ids[s]).collect();
        prop_assert_eq!(&got, &want, "{:?}", change);
        wanted.push(want);
    }
    // The pipelined batch gives the same answers, in order, however the batch is
    // cut (shorter than the pipeline, longer, one change).
    for batch in [1, 3, changes.len()] {
        let mut batched = Vec::new();
        for (start, chunk) in changes.chunks(batch).enumerate() {
            state.matching_each(chunk, &mut scratch, |position, found| {
                batched.push((start * batch + position, found.to_vec()));
            });
        }
        prop_assert_eq!(batched, wanted.iter().cloned().enumerate().collect::<Vec<_>>());
    }
    let watched = model.iter().flatten().map(|d| d.wiki()).collect::<BTreeSet<_>>().len();
    prop_assert_eq!(state.index().watched_wikis(), watched);
    Ok(())
}

fn any_deferral() -> impl Strategy<Value = Deferral> {
    prop_oneof![Just(Deferral::InstallNow), Just(Deferral::KeepForLater)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_agrees_with_the_rules(ops in proptest::collection::vec(any_op(), 1..25), changes in proptest::collection::vec(any_change(), 40)) {
        run_model(ops, &changes, None)?;
    }

    /// An index that leaves its compiling for later answers the same while its chunks
    /// wait (each pattern or literal on its own), after their compilations are put in,
    /// and when a compilation arrives after its chunk changed again (it is ignored).
    #[test]
    fn deferred_compiling_answers_the_same(
        ops in proptest::collection::vec(any_op(), 1..25),
        changes in proptest::collection::vec(any_change(), 40),
        deferrals in proptest::collection::vec(any_deferral(), 1..6),
    ) {
        run_model(ops, &changes, Some(deferrals))?;
    }
}

/// The persistence seam end to end: replaying the mutations a session returns into a
/// store, then restoring from the store, gives the same subscriptions, tokens and
/// definitions.
#[test]
fn state_restored_from_its_mutations_is_the_same() {
    use std::collections::BTreeMap;

    use flotilla_wikimedia_core::subscription::{DuplicateSubscription, Mutation, Restored};
    use flotilla_wikimedia_core::{Session, TokenHash};

    let mut live = Subscriptions::new(Wikis::embedded());
    let mut session = Session::default();
    let mut mutations = Vec::new();
    let mut feed = |line: &str| {
        let out = session.feed_line(line.as_bytes(), &mut live);
        mutations.extend(out.mutations);
        out.replies.first().map(|r| r.line()).unwrap_or_default()
    };
    let token = feed("subscribe keeper").strip_prefix("TOKEN: ").expect("token").to_string();
    feed(&format!("auth keeper {token}"));
    feed(r#"insert json [{"wiki":"enwiki","page":"A"},{"wiki":"dewiki","user_rx":"^B"},{"wiki":"kowiki"}]"#);
    feed(r#"remove json [{"wiki":"kowiki"}]"#);
    feed("format json");
    let token2 = feed("subscribe gone").strip_prefix("TOKEN: ").expect("token").to_string();
    feed(&format!("unsubscribe gone {token2}"));

    // A store as the integrator would keep it: rows keyed by name.
    let mut store: BTreeMap<String, (TokenHash, OutputFormat, BTreeSet<Definition>)> = BTreeMap::new();
    for mutation in mutations {
        match mutation {
            Mutation::Created { name, token_hash, format } => {
                store.insert(name.to_string(), (token_hash, format, BTreeSet::new()));
            }
            Mutation::Deleted { name } => {
                store.remove(name.as_str());
            }
            Mutation::FormatSet { name, format } => store.get_mut(name.as_str()).expect("created").1 = format,
            Mutation::DefinitionsAdded { name, definitions } => {
                store.get_mut(name.as_str()).expect("created").2.extend(definitions);
            }
            Mutation::DefinitionsRemoved { name, definitions } => {
                let row = store.get_mut(name.as_str()).expect("created");
                definitions.iter().for_each(|d| {
                    row.2.remove(d);
                });
            }
        }
    }
    let rows: Vec<Restored> = store
        .into_iter()
        .map(|(name, (token_hash, format, definitions))| Restored {
            name: SubscriptionName::parse(&name).expect("stored names are valid"),
            token_hash,
            format,
            // Through the raw fields, as a SQL row would carry them.
            definitions: definitions
                .iter()
                .map(|d| Definition::new(Wikis::embedded(), &d.fields()).expect("stored definitions are valid"))
                .collect(),
        })
        .collect();
    let mut restored = Subscriptions::new(Wikis::embedded());
    let ids = restored.restore_all(rows.clone()).expect("no duplicates");
    assert_eq!(ids.len(), 1);
    let id = restored.authenticate("keeper", &token).expect("the token still works");
    let original = live.authenticate("keeper", &token).expect("live");
    assert_eq!(restored.definitions(id), live.definitions(original));
    assert_eq!(restored.format(id), Some(OutputFormat::Json));
    assert_eq!(restored.find("gone"), None);
    assert_eq!(restored.info().wikis, 2);
    let edit = change(r#"{"wiki":"dewiki","title":"T","user":"Bea"}"#);
    assert_eq!(matched(&restored, &edit), ["keeper"]);
    let again = restored.restore_all(rows).map(|_| ());
    assert_eq!(again, Err(DuplicateSubscription(SubscriptionName::parse("keeper").expect("valid"))));
}
