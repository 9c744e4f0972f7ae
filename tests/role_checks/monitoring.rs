//! roles/monitoring against the real Prometheus tools: every rendered rule passes
//! `promtool check rules` and fires in a `promtool test rules` case; the rendered Alertmanager
//! config passes `amtool check-config` and routes as docs/alerts.md says; a real Alertmanager mails
//! `scripts/test-alert.sh`'s alert to an SMTP sink and honours the inhibitions; the real
//! exporters emit every metric the rules read.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};

use super::*;

fn rules(ctx: &Ctx) -> Value {
    let obj = yaml(&render("monitoring", "lab-rules.yaml.j2", ctx).0);
    assert_eq!(obj["kind"], "PrometheusRule");
    // The operator hands `spec` to Prometheus as a rules file.
    json!({"groups": obj["spec"]["groups"]})
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect()
}

#[test]
fn every_rendered_rule_passes_promtool_and_fires_in_a_test_case() {
    let Some(promtool) = have("promtool") else {
        return;
    };
    let without = alert_names(&rules(&role_ctx("monitoring", &[])));
    let rules = rules(&role_ctx("monitoring", &[("backup_offsite", json!(true))]));
    assert!(
        !without.iter().any(|a| a.starts_with("Backup")),
        "backup alerts without off-site backups would fire forever: {without:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "lab-rules.yml", &rules.to_string());
    let o = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
    assert!(o.status.success(), "promtool check rules:\n{}", show(&o));

    let tests_src = root().join("roles/monitoring/tests/lab-rules.test.yml");
    let tests_text = std::fs::read_to_string(&tests_src).unwrap();
    let tests = write(dir.path(), "lab-rules.test.yml", &tests_text);
    let o = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .current_dir(dir.path()));
    assert!(o.status.success(), "promtool test rules:\n{}", show(&o));

    // Coverage: every alert has a case that expects it to fire.
    let t = yaml(&tests_text);
    let fired: BTreeSet<String> = t["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["alert_rule_test"].as_array().unwrap())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|x| !x.is_empty()))
        .map(|a| a["alertname"].as_str().unwrap().to_string())
        .collect();
    let all = alert_names(&rules);
    let missing: Vec<_> = all.difference(&fired).collect();
    assert!(
        missing.is_empty(),
        "alerts without a firing test case: {missing:?}"
    );
    assert!(all.len() >= 9, "{all:?}");
}

#[test]
fn thresholds_come_from_the_vars() {
    let r = rules(&role_ctx(
        "monitoring",
        &[
            ("alert_disk_used_percent", json!(91)),
            ("alert_pg_connections_percent", json!(55)),
            ("alert_backup_max_age_hours", json!(50)),
            ("backup_offsite", json!(true)),
            ("postgres_namespace", json!("prod-db")),
        ],
    ))
    .to_string();
    for want in [
        "* 100 > 91",
        "* 100 > 55",
        "> 180000",
        "namespace=\\\"prod-db\\\"",
    ] {
        assert!(r.contains(want), "{want} not in {r}");
    }
}

fn alertmanager_config(overrides: &[(&str, Value)]) -> (String, Value) {
    let ctx = role_ctx("monitoring", overrides);
    let (text, tainted) = render("monitoring", "alertmanager.yaml.j2", &ctx);
    assert!(tainted, "the SMTP password comes from the vault");
    // The chart gets exactly this file as `alertmanager.config`.
    let (values, _) = render_values("monitoring.yaml.j2", &ctx);
    let values = yaml(&values);
    let cfg = yaml(&text);
    assert_eq!(values["alertmanager"]["config"], cfg);
    (text, cfg)
}

fn route_of(amtool: &std::path::Path, cfg: &std::path::Path, labels: &[&str]) -> String {
    let o = run(Command::new(amtool)
        .args(["config", "routes", "test", "--config.file"])
        .arg(cfg)
        .args(labels));
    assert!(
        o.status.success(),
        "amtool config routes test:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn alertmanager_config_passes_amtool_and_routes_as_documented() {
    let Some(amtool) = have("amtool") else {
        return;
    };
    let (text, cfg) = alertmanager_config(&[]);
    assert_eq!(cfg["global"]["smtp_auth_password"], VAULT_CANARY);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "alertmanager.yml", &text);
    let o = run(Command::new(&amtool).arg("check-config").arg(&f));
    assert!(o.status.success(), "amtool check-config:\n{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(VAULT_CANARY),
        "amtool printed the SMTP password"
    );
    assert_eq!(route_of(&amtool, &f, &["alertname=Watchdog"]), "null");
    assert_eq!(route_of(&amtool, &f, &["alertname=InfoInhibitor"]), "null");
    assert_eq!(
        route_of(
            &amtool,
            &f,
            &["alertname=PostgreSQLDown", "severity=critical"]
        ),
        "email"
    );
    assert_eq!(
        route_of(
            &amtool,
            &f,
            &["alertname=NodeFilesystemAlmostFull", "severity=warning"]
        ),
        "email"
    );
    let sel = |v: &Value| v.as_array().map(|a| a.len()).unwrap_or(0);
    assert!(sel(&cfg["inhibit_rules"]) >= 3);
}

/// Grafana mails through Alertmanager's SMTP account, its user and password from a Secret the
/// role writes before the release: the grafana chart (12.11.1) reads `smtp.existingSecret`,
/// `userKey` and `passwordKey` into GF_SMTP_USER / GF_SMTP_PASSWORD, and its
/// assertNoLeakedSecrets refuses a plain `grafana.ini` smtp.password (which would also sit in a
/// ConfigMap).
#[test]
fn grafana_smtp_credentials_come_from_a_secret_the_role_writes_before_the_release() {
    let ctx = role_ctx("monitoring", &[]);
    let (values, _) = render_values("monitoring.yaml.j2", &ctx);
    let grafana = &yaml(&values)["grafana"];
    let ini = &grafana["grafana.ini"];
    assert_eq!(ini["smtp"]["enabled"], true);
    assert_eq!(ini["smtp"]["host"], "smtp.example.org:587");
    assert_eq!(ini["smtp"]["startTLS_policy"], "MandatoryStartTLS");
    for key in ["password", "user"] {
        assert!(ini["smtp"].get(key).is_none(), "grafana.ini smtp.{key}");
    }
    assert!(
        !grafana.to_string().contains(VAULT_CANARY),
        "a vault value in Grafana's values: {grafana:#}"
    );

    let smtp = &grafana["smtp"];
    let secret_name = smtp["existingSecret"]
        .as_str()
        .expect("smtp.existingSecret");
    let (user_key, pw_key) = (
        smtp["userKey"].as_str().expect("smtp.userKey"),
        smtp["passwordKey"].as_str().expect("smtp.passwordKey"),
    );
    let engine = Engine::new(&root());
    let resources = role_resources("monitoring");
    let rendered = |r: &Value| engine.render_value(r, &ctx).unwrap().0;
    let at = |pred: &dyn Fn(&Value) -> bool| {
        resources
            .iter()
            .position(|r| pred(&rendered(r)))
            .unwrap_or_else(|| panic!("no such resource in roles/monitoring/role.yml"))
    };
    let secret_at = at(&|r| r["k8s_secret"]["name"] == secret_name);
    let release_at =
        at(&|r| r["helm_release"]["chart"] == "prometheus-community/kube-prometheus-stack");
    assert!(
        secret_at < release_at,
        "the Secret must exist before Grafana's pod starts"
    );
    let secret = rendered(&resources[secret_at])["k8s_secret"].clone();
    let release = rendered(&resources[release_at])["helm_release"].clone();
    assert_eq!(secret["namespace"], release["namespace"]);
    assert_eq!(secret["data"][user_key], "alertmanager@example.org");
    assert_eq!(secret["data"][pw_key], VAULT_CANARY);
    assert!(
        resources[secret_at]["notify"].is_string(),
        "Grafana reads the Secret only at start: a change must restart it"
    );
}

/// The Grafana handlers restart and exec into the Deployment the chart really makes, also for a
/// release whose name holds `grafana` (the chart then names it after the release alone).
#[test]
fn the_grafana_handlers_name_the_charts_deployment_for_any_release() {
    let text = std::fs::read_to_string(root().join("roles/monitoring/role.yml")).unwrap();
    let handlers = yaml(&text)["handlers"].clone();
    let engine = Engine::new(&root());
    for release in ["monitoring", "grafana-lab"] {
        let Some(chart) = super::alerts::rendered_monitoring_chart_with(&[&format!(
            "monitoring_release={release}"
        )]) else {
            return;
        };
        let grafana: Vec<&str> = chart
            .iter()
            .filter(|o| {
                o["kind"] == "Deployment"
                    && o["metadata"]["labels"]["app.kubernetes.io/name"] == "grafana"
            })
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let [deploy] = grafana.as_slice() else {
            panic!("{release}: one Grafana Deployment, not {grafana:?}")
        };
        let ctx = role_ctx("monitoring", &[("monitoring_release", json!(release))]);
        for h in handlers.as_array().unwrap() {
            let run = h["command"]["run"].as_str().unwrap();
            if !run.contains("deploy/") {
                continue;
            }
            let script = engine.render_str(run, &ctx).unwrap().text;
            let named: BTreeSet<&str> = script
                .split("deploy/")
                .skip(1)
                .map(|t| t.split_whitespace().next().unwrap().trim_end_matches(';'))
                .collect();
            assert_eq!(
                named,
                BTreeSet::from([*deploy]),
                "{release}: handler {}:\n{script}",
                h["name"]
            );
        }
    }
}

/// The messages in a Maildir (aiosmtpd's Mailbox handler), as text.
fn mails(maildir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            for e in rd.flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

/// Mail bodies are quoted-printable: join soft line breaks and decode `=3D` so searches work.
fn unfold(m: &str) -> String {
    m.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

#[test]
fn a_real_alertmanager_mails_the_test_alert_and_honours_inhibitions() {
    let (Some(am), Some(smtpd)) = (have("prometheus-alertmanager"), venv_program("aiosmtpd"))
    else {
        return;
    };
    if have("curl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let smtp_port = free_port();
    let _sink = Daemon::spawn(
        "aiosmtpd",
        Command::new(&smtpd)
            .args(["-n", "-l", &format!("127.0.0.1:{smtp_port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir),
    );
    wait_for("the SMTP sink", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", smtp_port)).ok()
    });

    // The deployed template, pointed at the sink: only addresses and timings differ.
    let (text, _) = alertmanager_config(&[
        ("smtp_smarthost", json!(format!("127.0.0.1:{smtp_port}"))),
        ("smtp_require_tls", json!(false)),
        ("alert_email_to", json!("oncall@lab.test")),
        ("alert_group_wait", json!("1s")),
        ("alert_group_interval", json!("2s")),
    ]);
    let cfg = write(dir.path(), "alertmanager.yml", &text);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _am = Daemon::spawn(
        "alertmanager",
        Command::new(&am)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
    );
    wait_for("Alertmanager to be ready", 60, || {
        http_get(&format!("{url}/-/ready"))
    });

    // docs/alerts.md's way: scripts/test-alert.sh.
    let o = run(Command::new(root().join("scripts/test-alert.sh"))
        .env("ALERTMANAGER_URL", &url)
        .env("TEST_ALERT_SEVERITY", "warning"));
    assert!(o.status.success(), "test-alert.sh:\n{}", show(&o));
    let mail = wait_for("the test alert's mail", 60, || {
        mails(&maildir)
            .into_iter()
            .find(|m| m.contains("LabTestAlert"))
    });
    let m = unfold(&mail);
    assert!(m.contains("To: oncall@lab.test"), "{m}");
    assert!(m.contains("From: alertmanager@example.org"), "{m}");
    assert!(m.contains("if you read this, alert mail works"), "{m}");

    // Inhibition: PostgreSQL down mutes its connection warning in the same namespace.
    let post = |body: Value| {
        let o = run(Command::new("curl")
            .args(["-fsS", "-H", "Content-Type: application/json", "-d"])
            .arg(body.to_string())
            .arg(format!("{url}/api/v2/alerts")));
        assert!(o.status.success(), "{}", show(&o));
    };
    post(json!([
        {"labels": {"alertname": "PostgreSQLDown", "severity": "critical", "namespace": "db"},
         "annotations": {"summary": "PostgreSQL in namespace db is down"}},
        {"labels": {"alertname": "PostgreSQLConnectionsNearMax", "severity": "warning", "namespace": "db", "instance": "i"},
         "annotations": {"summary": "connections"}},
        {"labels": {"alertname": "PostgreSQLConnectionsNearMax", "severity": "warning", "namespace": "staging-db", "instance": "j"},
         "annotations": {"summary": "connections elsewhere"}}
    ]));
    let inhibited = wait_for("the inhibition to show", 30, || {
        let body = http_get(&format!("{url}/api/v2/alerts"))?;
        let alerts: Value = serde_json::from_str(&body).ok()?;
        let find = |ns: &str| {
            alerts
                .as_array()
                .unwrap()
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "PostgreSQLConnectionsNearMax"
                        && a["labels"]["namespace"] == ns
                })
                .cloned()
        };
        let (db, other) = (find("db")?, find("staging-db")?);
        let n = |a: &Value| a["status"]["inhibitedBy"].as_array().map_or(0, |x| x.len());
        (n(&db) > 0).then_some((n(&db), n(&other)))
    });
    assert_eq!(inhibited.1, 0, "another namespace's warning is not muted");
    wait_for("the PostgreSQLDown mail", 60, || {
        mails(&maildir)
            .into_iter()
            .find(|m| m.contains("PostgreSQLDown"))
    });
    let other = wait_for("the other namespace's warning mail", 60, || {
        mails(&maildir)
            .into_iter()
            .find(|m| m.contains("staging-db"))
    });
    // The label format the search below relies on.
    assert!(unfold(&other).contains("namespace = staging-db"), "{other}");
    let muted: Vec<String> = mails(&maildir)
        .into_iter()
        .map(|m| unfold(&m))
        .filter(|m| m.contains("PostgreSQLConnectionsNearMax") && m.contains("namespace = db"))
        .collect();
    assert!(
        muted.is_empty(),
        "an inhibited alert was mailed:\n{}",
        muted.join("\n----\n")
    );
    for m in mails(&maildir) {
        assert!(
            !m.contains(VAULT_CANARY),
            "a mail carries the SMTP password"
        );
    }
}

/// Metric names a PromQL expression reads from one exporter (`pg_…`, `redis_…`).
fn metrics_read(rules: &Value, prefix: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(&format!(r"\b{prefix}[a-z_]+")).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .flat_map(|r| {
            re.find_iter(r["expr"].as_str().unwrap_or(""))
                .map(|m| m.as_str().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn uid_of(user: &str) -> Option<u32> {
    let o = Command::new("id").args(["-u", user]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

pub(super) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Real PostgreSQL 15 and Redis with passwords, the real exporters configured the way the
/// charts configure them (address, user and password from the environment): every metric the
/// rules read is there, and pg_up drops to 0 when PostgreSQL stops.
#[test]
fn the_real_exporters_emit_every_metric_the_rules_read() {
    use std::os::unix::process::CommandExt;
    let pgbin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    let (Some(pge), Some(rde), Some(redis)) = (
        have("prometheus-postgres-exporter"),
        have("prometheus-redis-exporter"),
        have("redis-server"),
    ) else {
        return;
    };
    if !pgbin.join("postgres").is_file() || have("curl").is_none() {
        super::skipped("PostgreSQL 15 server is not installed");
        return;
    }
    let Some(pg_uid) = uid_of("postgres") else {
        super::skipped("no postgres user");
        return;
    };
    let rules = rules(&role_ctx("monitoring", &[]));
    let dir = tempfile::tempdir().unwrap();
    let pw = "exporter-test-pw-31a";
    let data = dir.path().join("pg");
    std::fs::write(dir.path().join("pwfile"), pw).unwrap();
    let o = run(Command::new("chown")
        .arg("-R")
        .arg("postgres")
        .arg(dir.path()));
    assert!(o.status.success(), "{}", show(&o));
    let as_pg = |c: &mut Command| {
        c.uid(pg_uid).gid(pg_uid).current_dir(dir.path());
    };
    let mut initdb = Command::new(pgbin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
        .arg(dir.path().join("pwfile"));
    as_pg(&mut initdb);
    let o = run(&mut initdb);
    assert!(o.status.success(), "initdb:\n{}", show(&o));
    let pg_port = free_port();
    let mut pgcmd = Command::new(pgbin.join("postgres"));
    pgcmd
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &pg_port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
        ])
        .arg(dir.path());
    as_pg(&mut pgcmd);
    let pg = Daemon::spawn("postgres", &mut pgcmd).stop_with(libc::SIGINT);
    wait_for("PostgreSQL", 60, || {
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).ok()
    });

    let pge_port = free_port();
    let _pge = Daemon::spawn(
        "postgres exporter",
        Command::new(&pge)
            .arg(format!("--web.listen-address=127.0.0.1:{pge_port}"))
            .env(
                "DATA_SOURCE_URI",
                format!("127.0.0.1:{pg_port}/postgres?sslmode=disable"),
            )
            .env("DATA_SOURCE_USER", "postgres")
            .env("DATA_SOURCE_PASS", pw),
    );
    let url = format!("http://127.0.0.1:{pge_port}/metrics");
    let m = wait_for("pg_up 1 from the exporter", 60, || {
        http_get(&url).filter(|m| sample(m, "pg_up") == Some(1.0))
    });
    let want = metrics_read(&rules, "pg_");
    assert!(want.len() >= 3, "{want:?}");
    for name in &want {
        assert!(
            sample(&m, name).is_some(),
            "the exporter has no {name}:\n{m}"
        );
    }
    assert!(sample(&m, "pg_settings_max_connections").unwrap() >= 10.0);

    let rd_port = free_port();
    let _redis = Daemon::spawn(
        "redis",
        Command::new(&redis).args([
            "--port",
            &rd_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            pw,
        ]),
    );
    let rde_port = free_port();
    let _rde = Daemon::spawn(
        "redis exporter",
        Command::new(&rde)
            .arg(format!("--web.listen-address=127.0.0.1:{rde_port}"))
            .env("REDIS_ADDR", format!("redis://127.0.0.1:{rd_port}"))
            .env("REDIS_PASSWORD", pw),
    );
    let rurl = format!("http://127.0.0.1:{rde_port}/metrics");
    let m = wait_for("redis_up 1 from the exporter", 60, || {
        http_get(&rurl).filter(|m| sample(m, "redis_up") == Some(1.0))
    });
    for name in metrics_read(&rules, "redis_") {
        assert!(sample(&m, &name).is_some(), "the exporter has no {name}");
    }

    // PostgreSQL stops: what PostgreSQLDown reads turns to 0.
    drop(pg);
    wait_for("pg_up 0 after PostgreSQL stopped", 60, || {
        http_get(&url).filter(|m| sample(m, "pg_up") == Some(0.0))
    });
}
