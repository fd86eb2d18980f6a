//! Which prompts a worker takes first: those whose models it holds warm. A worker remembers, for each family
//! of prompts it ran (a family being the set of model files a prompt reads), the cache signatures of the
//! nodes that loaded them ([`Held`]); a family is held while all of them are still in its cache. Its status
//! lists what it holds, and every worker reads the others' statuses ([`Peers`]) to leave a prompt to an
//! idle worker that holds its family, for [`super::LOCALITY_GRACE`] ([`Chooser`]).

use kinograph_engine::{Cache, Signature};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Whether a family holds prompts sent to the front of the queue ([`super::FIRST_SUFFIX`]).
pub(crate) fn is_first(family: &str) -> bool {
    family.ends_with(super::FIRST_SUFFIX)
}

/// A family without its front-of-the-queue mark: the models are the same.
pub(crate) fn base_family(family: &str) -> &str {
    family.strip_suffix(super::FIRST_SUFFIX).unwrap_or(family)
}

/// The models this worker holds warm, by family.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// For each family: each model file (`folder/name`) and the signature of the node that loaded it.
    families: BTreeMap<String, Vec<(String, Signature)>>,
}

impl Held {
    /// Remembers that a prompt of `family` loaded `models` (`folder/name`, with its loader's signature).
    pub fn record(&mut self, family: &str, models: Vec<(String, Signature)>) {
        if !models.is_empty() {
            self.families.insert(family.to_string(), models);
        }
    }

    /// Forgets the families whose models left the cache (evicted, freed, or given way to the budget).
    pub fn refresh(&mut self, cache: &Cache) {
        let memory = cache.memory();
        self.families.retain(|_, models| models.iter().all(|(_, signature)| memory.contains(signature)));
    }

    /// The families held.
    pub fn families(&self) -> BTreeSet<String> {
        self.families.keys().cloned().collect()
    }

    /// The model files held, `folder/name` each, once each.
    pub fn models(&self) -> BTreeSet<String> {
        self.families.values().flatten().map(|(model, _)| model.clone()).collect()
    }
}

/// What this worker knows of the others, from their statuses.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    peers: BTreeMap<String, Peer>,
}

#[derive(Debug)]
struct Peer {
    heard: Instant,
    idle: bool,
    families: BTreeSet<String>,
}

/// How recent a status must be for a worker to count as idle: it sends one every
/// [`super::STATUS_PERIOD`] and whenever it starts or finishes a prompt.
const FRESH: Duration = Duration::from_secs(5);

impl Peers {
    /// Takes in a status a worker put in the bucket.
    pub fn heard(&mut self, status: &Json, now: Instant) {
        let Some(name) = status["name"].as_str() else { return };
        let families = status["families"].as_array().into_iter().flatten().filter_map(Json::as_str);
        let peer = Peer {
            heard: now,
            idle: status["current_prompt"].is_null(),
            families: families.map(str::to_string).collect(),
        };
        self.peers.insert(name.to_string(), peer);
    }

    /// Forgets a worker that stopped.
    pub fn gone(&mut self, name: &str) {
        self.peers.remove(name);
    }

    /// Whether a worker other than `me` is idle now and holds `family`.
    fn idle_holder(&self, family: &str, me: &str, now: Instant) -> bool {
        self.peers.iter().any(|(name, peer)| {
            name != me && peer.idle && now.duration_since(peer.heard) < FRESH && peer.families.contains(family)
        })
    }
}

/// The order in which one worker asks the families with prompts waiting for one.
#[derive(Debug)]
pub(crate) struct Chooser {
    /// This worker's name.
    me: String,
    /// How long a family an idle peer holds is left to it.
    grace: Duration,
    /// Since when each family has been left to a peer.
    deferred: BTreeMap<String, Instant>,
    /// Moves on with every prompt taken, so that no family always comes last.
    turn: usize,
}

impl Chooser {
    pub fn new(me: &str, grace: Duration) -> Self {
        Chooser { me: me.to_string(), grace, deferred: BTreeMap::new(), turn: 0 }
    }

    /// The families of `waiting` (in the order they were listed) to ask, in turn: the prompts sent to the
    /// front of the queue before all others, and within each the worker's own families (`own`) first, then
    /// the others from this turn on, leaving out for the grace time those that an idle peer holds.
    pub fn order(&mut self, waiting: &[String], own: &BTreeSet<String>, peers: &Peers, now: Instant) -> Vec<String> {
        self.deferred.retain(|family, _| waiting.contains(family));
        let (first, rest): (Vec<&String>, Vec<&String>) = waiting.iter().partition(|family| is_first(family));
        let mut order = Vec::new();
        for group in [first, rest] {
            self.arrange(&group, own, peers, now, &mut order);
        }
        order
    }

    fn arrange(
        &mut self,
        group: &[&String],
        own: &BTreeSet<String>,
        peers: &Peers,
        now: Instant,
        order: &mut Vec<String>,
    ) {
        let (mine, others): (Vec<&String>, Vec<&String>) =
            group.iter().copied().partition(|family| own.contains(base_family(family)));
        order.extend(mine.into_iter().cloned());
        let rotated = others.iter().cycle().skip(self.turn % others.len().max(1)).take(others.len());
        for family in rotated {
            if peers.idle_holder(base_family(family), &self.me, now) {
                let since = *self.deferred.entry((*family).clone()).or_insert(now);
                if now.duration_since(since) < self.grace {
                    continue;
                }
            } else {
                self.deferred.remove(*family);
            }
            order.push((*family).clone());
        }
    }

    /// A prompt was taken: the next look starts the others one further on.
    pub fn took_one(&mut self) {
        self.turn = self.turn.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(families: &[&str]) -> Vec<String> {
        families.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn own_families_come_first_and_an_idle_holders_family_waits_for_it_a_while() {
        let start = Instant::now();
        let grace = Duration::from_millis(1500);
        let mut peers = Peers::default();
        peers.heard(&json!({"name": "warm", "current_prompt": null, "families": ["ltx2"]}), start);
        peers.heard(&json!({"name": "busy", "current_prompt": "p", "families": ["wan"]}), start);
        let own: BTreeSet<String> = ["ltxv".to_string()].into();
        let waiting = names(&["ltx2", "none", "ltxv", "wan"]);
        let mut cold = Chooser::new("cold", grace);

        let order = cold.order(&waiting, &own, &peers, start);
        assert_eq!(order, names(&["ltxv", "none", "wan"]), "ltx2 is left to the idle worker that holds it");
        let order = cold.order(&waiting, &own, &peers, start + Duration::from_secs(1));
        assert!(!order.contains(&"ltx2".to_string()), "{order:?}");
        let after_grace = start + Duration::from_secs(2);
        peers.heard(&json!({"name": "warm", "current_prompt": null, "families": ["ltx2"]}), after_grace);
        let order = cold.order(&waiting, &own, &peers, after_grace);
        assert!(order.contains(&"ltx2".to_string()), "taken once the holder let it wait: {order:?}");

        // The holder itself takes it at once; a busy or silent holder does not hold it up.
        let theirs: BTreeSet<String> = ["ltx2".to_string()].into();
        let order = Chooser::new("warm", grace).order(&waiting, &theirs, &peers, start);
        assert_eq!(order[0], "ltx2");
        peers.gone("warm");
        let mut next = Chooser::new("cold", grace);
        next.took_one();
        let order = next.order(&waiting, &own, &peers, start);
        assert_eq!(order.len(), 4, "{order:?}");
        assert_eq!(order[0], "ltxv");
        assert_eq!(order[1], "none", "the others start from the turn");

        // Prompts sent to the front come before all others, the worker's own family first among them.
        let waiting = names(&["none", "wan-first", "ltxv", "ltxv-first"]);
        let order = Chooser::new("cold", grace).order(&waiting, &own, &peers, start);
        assert_eq!(order, names(&["ltxv-first", "wan-first", "ltxv", "none"]));
    }
}
