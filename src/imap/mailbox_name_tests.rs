//! Mailbox names as transcripts: INBOX and its children (RFC 3501 5.1: "INBOX" is
//! case-insensitive and may have inferior hierarchical names; 6.3.8: LIST returns each
//! matching name once), and the same validation with the same reply in every command that
//! takes a mailbox name.

use super::test_support::*;

#[tokio::test]
async fn inbox_children_list_inbox_once() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("CREATE \"INBOX/child\"").await;
    c.ok("CREATE \"inbox/second/third\"").await;
    let r = c.ok("LIST \"\" \"*\"").await;
    let inbox: Vec<&String> = r.iter().filter(|l| l.ends_with(" \"/\" INBOX")).collect();
    assert_eq!(inbox, vec!["* LIST (\\HasChildren) \"/\" INBOX"], "{r:#?}");
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" INBOX/child"), "{r:#?}");
    assert!(has(&r, "* LIST (\\HasChildren) \"/\" INBOX/second"), "{r:#?}");
    let r = c.ok("LIST \"\" \"%\"").await;
    assert_eq!(r.iter().filter(|l| l.contains("INBOX")).count(), 1, "{r:#?}");
    let r = c.ok("LIST \"\" \"INBOX/%\"").await;
    assert_eq!(r.len(), 3, "{r:#?}");
    // the child is a real mailbox of its own
    c.ok(&format!("APPEND INBOX/child {{{}+}}\r\n{}", SIMPLE.len(), SIMPLE)).await;
    assert!(c.ok("STATUS INBOX/child (MESSAGES)").await[0].contains("MESSAGES 1"));
    assert!(c.ok("STATUS INBOX (MESSAGES)").await[0].contains("MESSAGES 0"));
    c.ok("DELETE INBOX/child").await;
    let r = c.ok("LIST \"\" \"*\"").await;
    assert_eq!(r.iter().filter(|l| l.ends_with(" \"/\" INBOX")).count(), 1, "{r:#?}");
}

#[tokio::test]
async fn bad_names_get_the_same_answer_everywhere() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let names = ["\"../bob\"", "\"a/../../b\"", "\"a//b\"", "\"x.y\""];
    for name in names {
        for cmd in [
            // COPY first: a failed SELECT leaves no mailbox selected
            format!("COPY 1:* {name}"),
            format!("GETQUOTAROOT {name}"),
            format!("STATUS {name} (MESSAGES)"),
            format!("SELECT {name}"),
            format!("CREATE {name}"),
            format!("DELETE {name}"),
            format!("RENAME {name} other"),
            format!("RENAME Sent {name}"),
            format!("SUBSCRIBE {name}"),
            format!("APPEND {name} {{2+}}\r\nhi"),
        ] {
            let r = c.cmd(&cmd).await;
            assert_eq!(r.len(), 1, "{cmd} -> {r:?}");
            assert!(r[0].ends_with(" NO [CANNOT] Invalid mailbox name"), "{cmd} -> {r:?}");
        }
        c.ok("SELECT INBOX").await;
    }
    // a valid but missing mailbox is NONEXISTENT, an existing one gets its root
    assert!(c.cmd("GETQUOTAROOT Nowhere").await[0].contains("NO [NONEXISTENT]"));
    assert_eq!(c.ok("GETQUOTAROOT inbox").await[0], "* QUOTAROOT INBOX \"\"");
}
