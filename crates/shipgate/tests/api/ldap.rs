//! Group membership from a real OpenLDAP `slapd` (Debian's), started here on a fresh database
//! and seeded with people and groups. Skips loudly without slapd, except under `CI=true`,
//! where it fails.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const SUFFIX: &str = "dc=example,dc=org";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PW: &str = "ldap-test-secret";

pub struct Slapd {
    pub url: String,
    child: Option<tokio::process::Child>,
    _dir: tempfile::TempDir,
}

impl Slapd {
    pub async fn start() -> Option<Slapd> {
        let slapd = ["/usr/sbin/slapd", "/usr/local/sbin/slapd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(slapd) = slapd else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("slapd is required under CI=true (apt-get install slapd ldap-utils)");
            }
            eprintln!("\n*** SKIPPING LDAP test: slapd is not installed ***\n");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             pidfile {d}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PW}\n\
             directory {d}/db\n",
            d = dir.path().display()
        );
        let conf_path = dir.path().join("slapd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        // `-d 0` keeps slapd in the foreground, so that dropping the child stops it.
        let child = tokio::process::Command::new(slapd)
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!("{url}/"))
            .arg("-d")
            .arg("0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("slapd starts");
        let s = Slapd {
            url,
            child: Some(child),
            _dir: dir,
        };
        wait_until(
            "slapd accepts connections",
            Duration::from_secs(5),
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        Some(s)
    }

    /// Runs `ldapadd` / `ldapmodify` with an LDIF as the directory's admin.
    pub async fn ldif(&self, tool: &str, ldif: &str) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", ADMIN_DN, "-w", ADMIN_PW])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} runs (ldap-utils): {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// The base entries, people (uid = subject) and `groups`: name -> member uids.
    pub async fn seed(&self, people: &[&str], groups: &[(&str, &[&str])]) {
        let mut l = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
        );
        for p in people {
            l.push_str(&format!(
                "dn: uid={p},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {p}\ncn: {p} Example\nsn: Example\nmail: {p}@example.org\n\n"
            ));
        }
        for (g, members) in groups {
            l.push_str(&format!(
                "dn: cn={g},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {g}\n"
            ));
            for m in *members {
                l.push_str(&format!("member: uid={m},ou=people,{SUFFIX}\n"));
            }
            l.push('\n');
        }
        self.ldif("ldapadd", &l).await;
    }

    pub async fn add_member(&self, group: &str, uid: &str) {
        self.ldif(
            "ldapmodify",
            &format!(
                "dn: cn={group},ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid={uid},ou=people,{SUFFIX}\n"
            ),
        )
        .await;
    }

    pub async fn remove_member(&self, group: &str, uid: &str) {
        self.ldif(
            "ldapmodify",
            &format!(
                "dn: cn={group},ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid={uid},ou=people,{SUFFIX}\n"
            ),
        )
        .await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// shipgate settings that read this directory every `refresh` seconds.
pub fn configure(s: &mut shipgate_server::Settings, url: &str, map: &[(&str, &str)]) {
    s.ldap.url = Some(url.to_owned());
    s.ldap.bind_dn = Some(ADMIN_DN.into());
    s.ldap.bind_password = Some(ADMIN_PW.to_owned().into());
    s.ldap.user_base_dn = format!("ou=people,{SUFFIX}");
    s.ldap.group_base_dn = format!("ou=groups,{SUFFIX}");
    s.ldap.refresh_secs = 1;
    s.ldap.group_map = map
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
}

const POLICY: &str = r#"
[[rule]]
name = "production"
approvals = [{ group = "cab" }]
[rule.match]
env_tier = ["production"]
"#;

async fn members(app: &TestApp, group: &str) -> Vec<String> {
    let r = app.get("/api/v1/groups").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .map(|g| {
            g["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `group`'s members are `want`, and returns how long it took.
async fn until_members(app: &TestApp, group: &str, want: &[&str]) -> Duration {
    let t = Instant::now();
    wait_until(
        &format!("{group} is {want:?}"),
        Duration::from_secs(10),
        async || {
            let m = members(app, group).await;
            if m == want {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        },
    )
    .await;
    t.elapsed()
}

async fn change(app: &TestApp, token: &str) -> String {
    let r = app
        .post_as(
            "/api/v1/changes",
            json!({"type": "normal", "title": "checkout 2.0", "services": ["checkout"],
                   "environments": ["production"], "justification": "release"}),
            token,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["key"].as_str().unwrap().to_owned()
}

async fn approve(app: &TestApp, token: &str, key: &str) -> Resp {
    app.decide_as(key, json!({"decision": "approve", "comment": "ok"}), token)
        .await
}

/// Who may approve follows the directory: a person added to the LDAP group may approve after
/// the refresh interval, a person removed may not, and an unreachable directory changes
/// nothing.
#[tokio::test]
async fn directory_groups_decide_who_may_approve() {
    let Some(mut ldap) = Slapd::start().await else {
        return;
    };
    ldap.seed(&["alice", "bob", "carol"], &[("cab", &["carol"])])
        .await;
    let url = ldap.url.clone();
    let app = TestApp::spawn_with(|s| configure(s, &url, &[("cab", "cab")])).await;
    // The first read creates the group and its people.
    until_members(&app, "cab", &["carol"]).await;
    let people = app.get("/api/v1/people").await;
    let carol = people
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["subject"] == "carol")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(carol["email"], "carol@example.org", "{}", people.body);
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some(POLICY.to_owned().into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let alice = app.token_for("alice", "requester", None).await;
    let bob = app.token_for("bob", "approver", None).await;
    let carol = app.token_for("carol", "approver", None).await;
    let cr = change(&app, &alice).await;

    // Bob holds the approver role but is not in the directory group: refused.
    let r = approve(&app, &bob, &cr).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Added in the directory: allowed after the refresh interval.
    ldap.add_member("cab", "bob").await;
    let took = until_members(&app, "cab", &["bob", "carol"]).await;
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let r = approve(&app, &bob, &cr).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let gate = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/gate?change={cr}&environment=production"),
            Some(&alice),
            None,
            &[],
        )
        .await;
    assert_eq!(gate.body["state"], "allowed", "{}", gate.body);

    // Removed in the directory: refused after the refresh interval.
    let cr2 = change(&app, &alice).await;
    ldap.remove_member("cab", "carol").await;
    until_members(&app, "cab", &["bob"]).await;
    let r = approve(&app, &carol, &cr2).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Every membership change is in the audit trail, with who was added and removed.
    let audit = app.get("/api/v1/audit?limit=1000").await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let syncs: Vec<Value> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "directory.synced")
        .map(|e| serde_json::from_str(e["payload"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        syncs.len(),
        3,
        "one entry per change, none for quiet refreshes"
    );
    assert_eq!(syncs[1]["changes"][0]["added"], json!(["bob"]));
    assert_eq!(syncs[2]["changes"][0]["removed"], json!(["carol"]));

    // The directory goes away: the last synchronised membership stays, nobody is added, and
    // the failure is counted.
    let failed = "shipgate_directory_syncs_total{result=\"error\"}";
    let before = app.metric(failed).await;
    ldap.stop().await;
    // The refresh (every second) finds slapd gone and counts the failure.
    wait_until(
        "a directory refresh fails",
        Duration::from_secs(10),
        async || app.metric(failed).await > before,
    )
    .await;
    assert_eq!(members(&app, "cab").await, vec!["bob"]);
    app.stop().await;
}
