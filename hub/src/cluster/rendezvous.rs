//! Rendezvous (highest random weight) hashing: which live hub should own a database. Every hub
//! computes the same answer from the same list, and adding or removing a hub moves only the
//! databases that hub wins or held.

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not), so hubs of
/// different builds agree on owners.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly; a final avalanche (from SplitMix64) spreads them.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The hub (by id) that should own `db`, or `None` without hubs.
pub fn owner<'a>(db: &str, hubs: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    hubs.into_iter().max_by_key(|hub| (fnv1a(&[hub.as_bytes(), db.as_bytes()]), *hub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_spread_and_a_new_hub_moves_only_what_it_wins() {
        let hubs = ["a", "b", "c"];
        let dbs: Vec<String> = (0..300).map(|i| format!("db{i}")).collect();
        let before: Vec<&str> = dbs.iter().map(|db| owner(db, hubs).expect("owner")).collect();
        for hub in hubs {
            let n = before.iter().filter(|o| **o == hub).count();
            assert!((60..140).contains(&n), "{hub} owns {n} of 300");
        }
        let after: Vec<&str> = dbs.iter().map(|db| owner(db, ["a", "b", "c", "d"]).expect("owner")).collect();
        for (b, a) in before.iter().zip(&after) {
            assert!(a == b || *a == "d", "a database moved between old hubs: {b} -> {a}");
        }
        assert!(after.iter().filter(|o| **o == "d").count() > 40);
        assert_eq!(owner("x", std::iter::empty()), None);
    }
}
