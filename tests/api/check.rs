//! `concierge check`, run as a user runs it.

use std::process::Command;

use crate::helpers::Deployment;

fn check(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_concierge"))
        .arg("check")
        .arg("--config")
        .arg(dir.join("concierge.toml"))
        .env_remove("WEBCHAT_TITLE")
        .output()
        .expect("run concierge check")
}

#[test]
fn the_repository_config_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = check(root);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn an_unknown_key_in_a_channel_file_fails_naming_file_and_key() {
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\nverify_tokn = \"abc\"\n",
    )
    .unwrap();
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("channels/web.toml:2"), "{stderr}");
    assert!(stderr.contains("verify_tokn"), "{stderr}");
}

#[test]
fn an_unset_variable_fails_naming_file_and_key() {
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\ntitle = \"${WEBCHAT_TITLE}\"\n",
    )
    .unwrap();
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("channels/web.toml:2: key `title`"),
        "{stderr}"
    );
    assert!(stderr.contains("WEBCHAT_TITLE"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let deployment = Deployment::new("");
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .env("CONCIERGE__SERVER__BIND", "not-an-address")
        .arg("serve")
        .arg("--config")
        .arg(deployment.config_path())
        .output()
        .expect("run concierge serve");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("concierge.toml"), "{stderr}");
    assert!(stderr.contains("server.bind"), "{stderr}");
}

#[test]
fn the_example_channel_files_pass_with_their_variables_set() {
    let deployment = Deployment::new("");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/channels");
    for name in [
        "whatsapp.toml",
        "twilio.toml",
        "imessage.toml",
        "telegram.toml",
    ] {
        std::fs::copy(
            examples.join(name),
            deployment.path().join("channels").join(name),
        )
        .unwrap();
    }
    let run = |with_env: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
        command
            .arg("check")
            .arg("--config")
            .arg(deployment.config_path());
        for var in [
            "WHATSAPP_ACCESS_TOKEN",
            "WHATSAPP_APP_SECRET",
            "WHATSAPP_VERIFY_TOKEN",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "BLUEBUBBLES_PASSWORD",
            "BLUEBUBBLES_WEBHOOK_SECRET",
            "TELEGRAM_BOT_TOKEN",
            "TELEGRAM_SECRET_TOKEN",
        ] {
            if with_env {
                command.env(var, "x");
            } else {
                command.env_remove(var);
            }
        }
        command.output().expect("run concierge check")
    };
    let output = run(true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("5 channel(s)"));
    let output = run(false);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("whatsapp.toml:6: key `access_token`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("twilio.toml:5: key `auth_token`"),
        "{stderr}"
    );
}

#[test]
fn an_agent_naming_a_missing_tool_or_agent_fails_naming_the_file() {
    let deployment = Deployment::new(
        "[llm]\nprovider = \"ollama\"\nmodel = \"llama3.1\"\n\n[[tools]]\nname = \"order_status\"\ndescription = \"An order.\"\nurl = \"http://127.0.0.1:1/orders/{order_id}\"\nparameters = { type = \"object\", properties = { order_id = { type = \"string\" } } }\n",
    );
    let prompts = deployment.path().join("prompts");
    std::fs::write(
        prompts.join("front_desk.md"),
        "+++\ndescription = \"Front desk.\"\nentry = true\ntools = [\"order_status\", \"refund_everything\"]\nask = [\"billing\"]\n+++\nYou work for {{ merchant }}.\n",
    )
    .unwrap();
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("prompts/front_desk.md"), "{stderr}");
    assert!(stderr.contains("`refund_everything`"), "{stderr}");
    assert!(stderr.contains("`billing`"), "{stderr}");
    assert!(!stderr.contains("`order_status`"), "{stderr}");

    // Fixed, the same deployment passes and lists its agents.
    std::fs::write(
        prompts.join("front_desk.md"),
        "+++\ndescription = \"Front desk.\"\nentry = true\ntools = [\"order_status\"]\n+++\nYou work for {{ merchant }}.\n",
    )
    .unwrap();
    let output = check(deployment.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 agent(s): front_desk"), "{stdout}");
}

#[test]
fn a_tool_url_placeholder_without_its_argument_fails_naming_the_key() {
    let deployment = Deployment::new(
        "[[tools]]\nname = \"order_status\"\ndescription = \"An order.\"\nurl = \"http://127.0.0.1:1/orders/{id}\"\n",
    );
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tools[0].url"), "{stderr}");
    assert!(stderr.contains("{id}"), "{stderr}");
}

#[test]
fn queue_mistakes_fail_naming_file_and_key() {
    let deployment = Deployment::new(
        "[[teams]]\nname = \"support\"\nhours = \"mon-fry 09:00-18:00\"\n\n[[concierges]]\nname = \"ana\"\nteams = [\"billing\"]\n",
    );
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("concierge.toml"), "{stderr}");
    assert!(stderr.contains("teams[0].hours"), "{stderr}");
    assert!(stderr.contains("`fry` is not a day"), "{stderr}");
    assert!(stderr.contains("concierges[0].teams"), "{stderr}");
    assert!(stderr.contains("`billing` is not a team"), "{stderr}");
}

#[test]
fn redis_store_mistakes_fail_naming_file_and_key() {
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.config_path(),
        "[store]\nurl = \"redis://127.0.0.1:6379/0\"\nprefix = \"has space\"\npartitions = 0\ntakeover_ms = 10\n",
    )
    .expect("concierge.toml");
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("concierge.toml"), "{stderr}");
    for key in ["store.prefix", "store.partitions", "store.takeover_ms"] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
    // A well-formed Redis URL itself is accepted.
    assert!(!stderr.contains("store.url"), "{stderr}");

    std::fs::write(
        deployment.config_path(),
        "[store]\nurl = \"redis://127.0.0.1:6379/0\"\nprefix = \"shop-eu\"\n",
    )
    .expect("concierge.toml");
    let output = check(deployment.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The released command has only the product's commands: the bench, the chaos run and the
/// demo shop are `cargo dev …` (crates/dev).
#[test]
fn the_concierge_command_has_no_developer_tools() {
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "check", "token", "inbox", "replay", "telegram"] {
        assert!(help.contains(command), "no `{command}` in\n{help}");
    }
    for tool in ["bench", "chaos", "demo-shop", "demo_shop"] {
        assert!(!help.contains(tool), "`{tool}` in\n{help}");
    }
    for tool in ["bench", "bench-plain", "chaos", "demo-shop"] {
        let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
            .args([tool, "--help"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "`concierge {tool}` still runs");
    }
}

#[test]
fn agent_problems_have_a_line_and_the_name_meant() {
    let deployment = Deployment::new(
        "[llm]\nprovider = \"ollama\"\nmodel = \"llama3.1\"\n\n[[tools]]\nname = \"search_catalogue\"\ndescription = \"Products.\"\nurl = \"http://127.0.0.1:1/products\"\n",
    );
    let prompts = deployment.path().join("prompts");
    std::fs::write(
        prompts.join("front_desk.md"),
        "+++\ndescription = \"Front desk.\"\nentry = true\ntools = [\"search_catalog\"]\nask = [\"order\"]\n+++\nHi.\n",
    )
    .unwrap();
    std::fs::write(
        prompts.join("orders.md"),
        "+++\ndescription = \"Orders.\"\n+++\nOrders.\n",
    )
    .unwrap();
    std::fs::write(
        prompts.join("returns.md"),
        "+++\ndescription = \"Returns.\"\ntols = []\n+++\nReturns.\n",
    )
    .unwrap();
    let output = check(deployment.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    // In file and line order, each with its line and the known name it resembles.
    assert!(
        lines[0].contains("prompts/front_desk.md:4: key `tools`")
            && lines[0].contains("did you mean `search_catalogue`?"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("prompts/front_desk.md:5: key `ask`")
            && lines[1].contains("did you mean `orders`?"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("prompts/returns.md:3") && lines[2].contains("did you mean `tools`?"),
        "{stderr}"
    );
}

#[test]
fn a_misspelt_environment_override_is_named_as_the_variable() {
    let deployment = Deployment::new("");
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .env("CONCIERGE__SERVR__BIND", "127.0.0.1:0")
        .arg("check")
        .arg("--config")
        .arg(deployment.config_path())
        .output()
        .expect("run concierge check");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("environment variable CONCIERGE__SERVR__BIND (over "),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `CONCIERGE__SERVER__BIND`?"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("concierge.toml:"),
        "no file line: {stderr}"
    );
}

#[test]
fn a_template_the_catalogue_does_not_have_or_a_bad_template_file_fails_with_its_place() {
    let deployment = Deployment::new("");
    let root = deployment.path();
    std::fs::create_dir(root.join("templates")).unwrap();
    std::fs::write(
        root.join("templates/order_shipped.fr.toml"),
        "category = \"utility\"\nbody = \"Votre commande {{order}} est partie.\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/sale.fr.toml"),
        "category = \"marketing\"\nbody = \"-{{1}} % sur {{3}}\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/promo.fr.toml"),
        "category = \"advert\"\nbody = \"x\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("channels/whatsapp.toml"),
        "kind = \"whatsapp\"\nphone_number_id = \"1\"\naccess_token = \"t\"\napp_secret = \"s\"\nverify_token = \"v\"\nreengagement_template = { name = \"order_shiped\", language = \"fr\" }\n",
    )
    .unwrap();
    let output = check(root);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("channels/whatsapp.toml:6: key `reengagement_template`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `order_shipped`"), "{stderr}");
    assert!(
        stderr.contains("templates/sale.fr.toml:2: key `body`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("templates/promo.fr.toml:1: key `category`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn templates_sync_reports_how_the_account_differs_from_the_catalogue() {
    let graph = concierge_testkit::platform::FakeApi::start().await.unwrap();
    let deployment = Deployment::new("");
    let root = deployment.path();
    std::fs::create_dir(root.join("templates")).unwrap();
    let shipped = "Votre commande {{order}} est partie.";
    std::fs::write(
        root.join("templates/order_shipped.fr.toml"),
        format!("category = \"utility\"\nbody = \"{shipped}\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("templates/back_in_stock.fr.toml"),
        "category = \"marketing\"\nbody = \"{{product}} est de retour.\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/pickup_ready.fr.toml"),
        "category = \"utility\"\nbody = \"Votre retrait est prêt.\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"1\"\nwaba_id = \"200000000000002\"\naccess_token = \"t\"\napp_secret = \"s\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\n",
            graph.url
        ),
    )
    .unwrap();
    let body = |text: &str| serde_json::json!([{ "type": "BODY", "text": text }]);
    graph.serve_templates(vec![
        serde_json::json!({"name": "order_shipped", "language": "fr", "status": "APPROVED", "category": "UTILITY", "components": body(shipped)}),
        serde_json::json!({"name": "back_in_stock", "language": "fr", "status": "REJECTED", "category": "MARKETING", "components": body("{{product}} est là !")}),
        serde_json::json!({"name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "components": body("Hello")}),
    ]);
    let root = root.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_concierge"))
            .args(["templates", "sync", "--channel", "whatsapp", "--config"])
            .arg(root.join("concierge.toml"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 template(s) in the account (2 approved), 3 in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("back_in_stock.fr: REJECTED in the account"),
        "{stdout}"
    );
    assert!(
        stdout.contains("back_in_stock.fr: the body differs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pickup_ready.fr: not in the WhatsApp Business account"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello_world.en_US: APPROVED in the account, not in templates/"),
        "{stdout}"
    );
    assert!(!stdout.contains("order_shipped"), "in agreement: {stdout}");
    let asked = graph
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/message_templates"))
        .expect("the account was read");
    assert_eq!(asked.path, "/v23.0/200000000000002/message_templates");
    assert_eq!(
        asked
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer t")
    );
}
