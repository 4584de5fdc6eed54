//! Checks of the scripts' text, and the Lua interval set run in a real Redis against
//! [`RangeSet`](crate::range::RangeSet).

use super::{INTERVALS, PRELUDE, key_indexes};
use crate::range::{MAX_VALUE, RangeSet};
use std::collections::BTreeSet;

/// The `K_…` names in a Lua text.
fn key_names(lua: &str) -> BTreeSet<String> {
    lua.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("K_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_key_index_a_script_uses_is_generated() {
    let defined = key_names(&key_indexes());
    assert!(defined.contains("K_SPEC") && defined.contains("K_LEASED"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/storage/redis/lua");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let lua = std::fs::read_to_string(&path).unwrap();
        let unknown: Vec<String> = key_names(&lua).difference(&defined).cloned().collect();
        assert!(unknown.is_empty(), "{}: {unknown:?}", path.display());
        // The indexes have one definition, the generated one.
        assert!(
            !lua.contains("local K_"),
            "{} sets a key index",
            path.display()
        );
        read += 1;
    }
    assert!(read > 10, "read only {read} scripts from {dir}");
}

/// Runs a list of interval-set operations on one sorted set in one script call, and answers
/// each with a string: a count, `1`/`0` for membership, or a list of bounds.
const INTERVAL_OPS: &str = r#"
local out = {}
for i = 1, #ARGV, 3 do
  local op, a, b = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if op == 'insert' then
    out[#out + 1] = num(iv_insert(KEYS[1], a, b))
  elseif op == 'remove' then
    out[#out + 1] = num(iv_remove(KEYS[1], a, b))
  elseif op == 'contains' then
    out[#out + 1] = iv_contains(KEYS[1], a) and '1' or '0'
  elseif op == 'take' then
    out[#out + 1] = iv_encode(iv_take_first(KEYS[1], a))
  else
    out[#out + 1] = iv_encode(iv_page(KEYS[1], a, b))
  end
end
out[#out + 1] = table.concat(redis.call('ZRANGE', KEYS[1], 0, -1), ' ')
return out
"#;

/// One operation and what the model says it answers.
fn apply(model: &mut RangeSet, op: &str, a: u64, b: u64) -> String {
    let bounds = |set: &RangeSet| {
        let flat: Vec<String> = set
            .intervals()
            .flat_map(|(s, e)| [s.to_string(), e.to_string()])
            .collect();
        flat.join(" ")
    };
    match op {
        "insert" => {
            let before = model.len();
            model.insert_interval(a, b);
            (model.len() - before).to_string()
        }
        "remove" => {
            let before = model.len();
            model.remove_interval(a, b);
            (before - model.len()).to_string()
        }
        "contains" => if model.contains(a) { "1" } else { "0" }.to_owned(),
        "take" => bounds(&model.take_first(a)),
        _ => {
            let page: Vec<(u64, u64)> = model
                .intervals()
                .filter(|&(_, e)| e >= a)
                .take(b as usize)
                .collect();
            bounds(&RangeSet::from_intervals(page))
        }
    }
}

#[tokio::test]
async fn the_lua_interval_set_matches_range_set() {
    let server = wasmjob_test_support::RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(&format!(
        "{}{PRELUDE}\n{INTERVALS}\n{INTERVAL_OPS}",
        key_indexes()
    ));
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut below = |n: u64| {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    for round in 0..200 {
        // Small values, and values near the largest, where a double printed with an exponent
        // would lose digits.
        let base = if round % 2 == 0 { 0 } else { MAX_VALUE - 150 };
        let key = format!("set:{round}");
        let mut model = RangeSet::new();
        for batch in 0..5 {
            let mut ops = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..30 {
                let op =
                    ["insert", "insert", "remove", "contains", "take", "page"][below(6) as usize];
                let a = base + below(150);
                let b = match op {
                    "insert" | "remove" => (a + below(12)).min(base + 150),
                    "page" => 1 + below(4),
                    _ => 0,
                };
                let a = if op == "take" { 1 + below(20) } else { a };
                expected.push(apply(&mut model, op, a, b));
                ops.extend([op.to_owned(), a.to_string(), b.to_string()]);
            }
            let mut answers: Vec<String> = script
                .key(&key)
                .arg(&ops)
                .invoke_async(&mut redis)
                .await
                .unwrap();
            let members = answers.pop().unwrap();
            let ctx = format!("round {round} batch {batch}: {ops:?}");
            assert_eq!(answers, expected, "{ctx}");
            let stored: Vec<String> = model.intervals().map(|(s, e)| format!("{s} {e}")).collect();
            assert_eq!(members, stored.join(" "), "{ctx}");
        }
    }
}
