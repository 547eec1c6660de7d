//! THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES threading of the messages a search
//! selected, and the `* THREAD (...)` list syntax. Pure: the session supplies each
//! message's number, ids, base subject and sent date (read from the header only).
//!
//! REFERENCES follows the RFC 5256 section 4 steps (the "jwz" algorithm): link by
//! References/In-Reply-To without creating loops, prune empty containers, merge root
//! threads with the same base subject, sort siblings by sent date.

use std::collections::HashMap;

/// What threading needs to know about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadMessage {
    /// Sequence number or UID, as the answer should carry.
    pub number: u32,
    pub message_id: Option<String>,
    /// References, oldest first; In-Reply-To when there is no References.
    pub references: Vec<String>,
    /// RFC 5256 base subject (see `sort::base_subject`).
    pub base_subject: String,
    /// The subject had a Re:/Fwd: style prefix (RFC 5256 "reply or forward").
    pub is_reply: bool,
    pub sent_date: i64,
}

/// One node of a thread tree; `message: None` is a placeholder for a message we do not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNode {
    pub message: Option<u32>,
    pub children: Vec<ThreadNode>,
}

/// ORDEREDSUBJECT: group by base subject, the first message (by date) is the parent of the
/// rest; threads ordered by their first message's date.
pub fn ordered_subject(messages: &[ThreadMessage]) -> Vec<ThreadNode> {
    let mut sorted: Vec<&ThreadMessage> = messages.iter().collect();
    sorted.sort_by(|a, b| {
        (a.base_subject.as_str(), a.sent_date, a.number).cmp(&(b.base_subject.as_str(), b.sent_date, b.number))
    });
    let mut threads: Vec<(i64, u32, ThreadNode)> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut node = ThreadNode { message: Some(first.number), children: Vec::new() };
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].base_subject == first.base_subject {
            node.children.push(ThreadNode { message: Some(sorted[j].number), children: Vec::new() });
            j += 1;
        }
        threads.push((first.sent_date, first.number, node));
        i = j;
    }
    threads.sort_by_key(|(d, n, _)| (*d, *n));
    threads.into_iter().map(|(_, _, n)| n).collect()
}

/// Deepest reply chain we build: deeper replies start a new thread, so recursion over the
/// tree stays shallow whatever References a sender writes.
const MAX_DEPTH: usize = 200;

struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Arena {
    c: Vec<Container>,
    ids: HashMap<String, usize>,
}

impl Arena {
    fn container_for(&mut self, id: &str) -> usize {
        if let Some(&i) = self.ids.get(id) {
            return i;
        }
        self.c.push(Container { message: None, parent: None, children: Vec::new() });
        let i = self.c.len() - 1;
        self.ids.insert(id.to_string(), i);
        i
    }

    /// Is `a` an ancestor of (or equal to) `b`?
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut cur = Some(b);
        let mut steps = 0;
        while let Some(x) = cur {
            if x == a {
                return true;
            }
            steps += 1;
            if steps > self.c.len() {
                return true; // defensive: treat a cycle as "would loop"
            }
            cur = self.c[x].parent;
        }
        false
    }

    /// Number of ancestors (bounded walk).
    fn depth(&self, c: usize) -> usize {
        let mut d = 0;
        let mut cur = self.c[c].parent;
        while let Some(x) = cur {
            d += 1;
            if d > MAX_DEPTH {
                break;
            }
            cur = self.c[x].parent;
        }
        d
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }
}

/// REFERENCES threading (RFC 5256 4).
pub fn references(messages: &[ThreadMessage]) -> Vec<ThreadNode> {
    let mut a = Arena { c: Vec::new(), ids: HashMap::new() };
    // (1) link messages by their references
    for (i, m) in messages.iter().enumerate() {
        let mut id = m.message_id.clone().unwrap_or_default();
        if id.is_empty() || a.ids.get(&id).is_some_and(|&c| a.c[c].message.is_some()) {
            id = format!("\0unique-{i}");
        }
        let this = a.container_for(&id);
        a.c[this].message = Some(i);
        let refs: Vec<usize> = m.references.iter().take(100).map(|r| a.container_for(r)).collect();
        for pair in refs.windows(2) {
            let (p, c) = (pair[0], pair[1]);
            if a.c[c].parent.is_none() && !a.is_ancestor(c, p) && a.depth(p) < MAX_DEPTH {
                a.link(p, c);
            }
        }
        match refs.last() {
            Some(&last) if last != this && !a.is_ancestor(this, last) && a.depth(last) < MAX_DEPTH => {
                if a.c[this].parent != Some(last) {
                    a.link(last, this);
                }
            }
            _ => a.unlink(this),
        }
    }
    // (2) root set
    let roots: Vec<usize> = (0..a.c.len()).filter(|&i| a.c[i].parent.is_none()).collect();
    // (4) prune empty containers
    let roots = prune(&mut a, roots, true);
    // (5) merge root threads with the same base subject
    let subject_of = |a: &Arena, c: usize| -> Option<usize> {
        a.c[c].message.or_else(|| a.c[c].children.first().and_then(|&k| a.c[k].message))
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let Some(m) = subject_of(&a, r) else { continue };
        let subject = &messages[m].base_subject;
        if subject.is_empty() {
            continue;
        }
        match table.get(subject) {
            None => {
                table.insert(subject.clone(), r);
            }
            Some(&old) => {
                let old_dummy = a.c[old].message.is_none();
                let this_dummy = a.c[r].message.is_none();
                let old_reply = a.c[old].message.is_some_and(|x| messages[x].is_reply);
                let this_reply = a.c[r].message.is_some_and(|x| messages[x].is_reply);
                if (this_dummy && !old_dummy) || (old_reply && !this_reply && !this_dummy) {
                    table.insert(subject.clone(), r);
                }
            }
        }
    }
    let mut final_roots = Vec::new();
    for r in roots {
        let target = subject_of(&a, r)
            .map(|m| &messages[m].base_subject)
            .filter(|s| !s.is_empty())
            .and_then(|s| table.get(s).copied());
        let Some(old) = target.filter(|&o| o != r) else {
            final_roots.push(r);
            continue;
        };
        let old_dummy = a.c[old].message.is_none();
        let this_dummy = a.c[r].message.is_none();
        let old_reply = a.c[old].message.is_some_and(|x| messages[x].is_reply);
        let this_reply = a.c[r].message.is_some_and(|x| messages[x].is_reply);
        if old_dummy && this_dummy {
            let kids = std::mem::take(&mut a.c[r].children);
            for k in kids {
                a.c[k].parent = None;
                a.link(old, k);
            }
        } else if old_dummy || this_dummy {
            let (dummy, real) = if old_dummy { (old, r) } else { (r, old) };
            a.link(dummy, real);
            if dummy == r {
                // the dummy takes the old root's place in the table's root
                final_roots.retain(|&x| x != old);
                final_roots.push(r);
                table.insert(subject_of(&a, r).map(|m| messages[m].base_subject.clone()).unwrap_or_default(), r);
            }
        } else if !old_reply && this_reply {
            a.link(old, r);
        } else {
            // a new placeholder parents both
            a.c.push(Container { message: None, parent: None, children: Vec::new() });
            let dummy = a.c.len() - 1;
            a.link(dummy, old);
            a.link(dummy, r);
            final_roots.retain(|&x| x != old);
            final_roots.push(dummy);
            if let Some(m) = subject_of(&a, dummy) {
                table.insert(messages[m].base_subject.clone(), dummy);
            }
        }
    }
    // (6) build and sort by sent date (placeholders take their first child's date)
    let mut nodes: Vec<(i64, u32, ThreadNode)> = final_roots.iter().map(|&r| build(&a, r, messages)).collect();
    nodes.sort_by_key(|(d, n, _)| (*d, *n));
    nodes.into_iter().map(|(_, _, n)| n).collect()
}

fn prune(a: &mut Arena, list: Vec<usize>, at_root: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for c in list {
        let kids = std::mem::take(&mut a.c[c].children);
        let kids = prune(a, kids, false);
        a.c[c].children = kids;
        if a.c[c].message.is_some() {
            out.push(c);
            continue;
        }
        let kids = a.c[c].children.clone();
        if kids.is_empty() {
            continue;
        }
        if !at_root || kids.len() == 1 {
            // promote the children to this level
            let parent = a.c[c].parent;
            for &k in &kids {
                a.c[k].parent = parent;
            }
            a.c[c].children.clear();
            out.extend(kids);
        } else {
            out.push(c);
        }
    }
    if !at_root {
        // keep parent links consistent for the caller's container
        return out;
    }
    for &r in &out {
        a.c[r].parent = None;
    }
    out
}

/// Tree for a container: (date, number) for sorting, and the node.
fn build(a: &Arena, c: usize, messages: &[ThreadMessage]) -> (i64, u32, ThreadNode) {
    let mut kids: Vec<(i64, u32, ThreadNode)> = a.c[c].children.iter().map(|&k| build(a, k, messages)).collect();
    kids.sort_by_key(|(d, n, _)| (*d, *n));
    let (date, number) = match a.c[c].message {
        Some(m) => (messages[m].sent_date, messages[m].number),
        None => kids.first().map(|(d, n, _)| (*d, *n)).unwrap_or((0, 0)),
    };
    let node = ThreadNode {
        message: a.c[c].message.map(|m| messages[m].number),
        children: kids.into_iter().map(|(_, _, n)| n).collect(),
    };
    (date, number, node)
}

/// `(1)(2 3)(4 (5)(6))`: RFC 5256 `thread-list` for each root.
pub fn render(threads: &[ThreadNode]) -> String {
    let mut out = String::new();
    for t in threads {
        out.push('(');
        members(t, &mut out);
        out.push(')');
    }
    out
}

fn members(node: &ThreadNode, out: &mut String) {
    if let Some(n) = node.message {
        if !out.ends_with('(') {
            out.push(' ');
        }
        out.push_str(&n.to_string());
    }
    match node.children.as_slice() {
        [] => {}
        [only] if node.message.is_some() => members(only, out),
        kids => {
            if node.message.is_some() {
                out.push(' ');
            }
            for k in kids {
                out.push('(');
                members(k, out);
                out.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32, id: &str, refs: &[&str], subject: &str, date: i64) -> ThreadMessage {
        ThreadMessage {
            number: n,
            message_id: Some(id.to_string()),
            references: refs.iter().map(|s| s.to_string()).collect(),
            base_subject: subject.to_string(),
            is_reply: !refs.is_empty(),
            sent_date: date,
        }
    }

    #[test]
    fn renders_rfc_shapes() {
        let leaf = |n| ThreadNode { message: Some(n), children: vec![] };
        let chain = ThreadNode { message: Some(2), children: vec![leaf(3)] };
        let fork = ThreadNode { message: Some(4), children: vec![leaf(5), leaf(6)] };
        let dummy = ThreadNode { message: None, children: vec![leaf(7), leaf(8)] };
        assert_eq!(render(&[leaf(1), chain, fork, dummy]), "(1)(2 3)(4 (5)(6))((7)(8))");
    }

    #[test]
    fn references_builds_a_tree() {
        let ms = vec![
            msg(1, "<a>", &[], "plan", 10),
            msg(2, "<b>", &["<a>"], "plan", 20),
            msg(3, "<c>", &["<a>", "<b>"], "plan", 30),
            msg(4, "<d>", &["<a>"], "plan", 25),
            msg(5, "<e>", &[], "other", 5),
            // parent missing from the mailbox: one reply alone is promoted
            msg(6, "<f>", &["<zz>"], "lost", 40),
        ];
        assert_eq!(render(&references(&ms)), "(5)(1 (2 3)(4))(6)");
    }

    #[test]
    fn references_merges_by_subject_and_survives_loops() {
        let ms = vec![
            msg(1, "<a>", &["<b>"], "x", 10),
            msg(2, "<b>", &["<a>"], "x", 20),
            msg(3, "<c>", &[], "hello", 30),
            msg(4, "<d>", &[], "hello", 5),
            msg(5, "<a>", &[], "dup", 50),
        ];
        let out = render(&references(&ms));
        assert!(out.contains("(1 2)") || out.contains("(2 1)"), "{out}");
        assert!(out.contains("((4)(3))"), "{out}");
        assert!(out.contains("(5)"), "{out}");
    }

    #[test]
    fn very_long_chains_stay_bounded() {
        let ms: Vec<ThreadMessage> = (1..=5000u32)
            .map(|n| {
                let refs = if n == 1 { vec![] } else { vec![format!("<{}>", n - 1)] };
                ThreadMessage {
                    number: n,
                    message_id: Some(format!("<{n}>")),
                    references: refs,
                    base_subject: String::new(),
                    is_reply: n > 1,
                    sent_date: n as i64,
                }
            })
            .collect();
        let out = render(&references(&ms));
        assert!(out.starts_with("(1 2 3"), "{}", &out[..20]);
    }

    #[test]
    fn ordered_subject_groups() {
        let ms = vec![
            msg(1, "<a>", &[], "b", 30),
            msg(2, "<b>", &[], "a", 20),
            msg(3, "<c>", &[], "b", 10),
            msg(4, "<d>", &[], "b", 40),
        ];
        assert_eq!(render(&ordered_subject(&ms)), "(3 (1)(4))(2)");
    }
}
