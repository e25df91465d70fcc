//! Buying a candle in the web chat, in Chromium, with the repository's own deployment (its
//! prompts, its tools, the demo shop and its payment page) and the fake LLM scripted as a
//! model would answer: product cards, "Add to cart", the cart, checkout, the delivery choice,
//! the payment button, the shop's payment page, and the confirmation back in the chat after
//! the shop told the gateway. Screenshots in target/test-artifacts.

use std::sync::Arc;

use serde_json::json;

use crate::console::{Driver, browser};
use crate::fake_llm::{FakeLlm, last_user_text, text, tool};
use crate::helpers::{TestApp, eventually};
use concierge::app::{App, Parts};
use concierge_testkit::demo_checkout::CheckoutSettings;

#[tokio::test]
async fn a_visitor_buys_a_candle_in_the_web_chat_and_pays_on_the_shops_page() {
    let Some((chromium, chromedriver)) =
        browser("a_visitor_buys_a_candle_in_the_web_chat_and_pays_on_the_shops_page")
    else {
        return;
    };
    let llm = FakeLlm::start().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_url = format!("http://{}", shop_listener.local_addr().unwrap());
    let deployment = crate::agents::demo_deployment(&llm.url, &shop_url);
    crate::helpers::init();
    let config = deployment.config();
    let app = App::start_with(config, gateway, Parts::default())
        .await
        .expect("app starts");
    let app = TestApp {
        addr: app.addr,
        app,
        deployment,
        client: reqwest::Client::new(),
    };
    // The shop tells the gateway of payments with a service token of the `events` scope.
    let events = concierge::handoff::access::issue_service(
        app.store().as_ref(),
        "demo-shop",
        &["events".into()],
    )
    .await
    .unwrap();
    let shop =
        concierge_testkit::demo_shop::Shop::load(&root.join("examples/demo-shop.json")).unwrap();
    let router = concierge_testkit::demo_shop::router_with(
        Arc::new(shop),
        Some("demo-shop-token".to_string()),
        CheckoutSettings {
            public_url: shop_url.clone(),
            gateway: Some((app.url(""), events)),
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(shop_listener, router).await;
    });

    llm.script(vec![
        tool("search_catalogue", json!({ "q": "figuier" })),
        tool("product_stock", json!({ "sku": "BOU-FIGUIER" })),
        tool(
            "show_products",
            json!({ "products": ["BOU-FIGUIER-180", "BOU-FIGUIER-300"], "text": "Notre bougie Figuier, deux tailles sous 40 € :" }),
        ),
        text("Laquelle vous tente pour votre sœur ?"),
    ]);
    let driver = Driver::start(&chromium, &chromedriver).await;
    let artifacts = root.join("target/test-artifacts");
    driver.goto(&app.url("/chat/web")).await;
    driver
        .until(
            "the live stream",
            "return document.getElementById('status').textContent === 'online'",
        )
        .await;
    driver
        .type_into(
            "#text",
            "Une bougie à la figue pour ma sœur, moins de 40 € ?",
        )
        .await;
    driver.click("#form button[type=submit]").await;
    driver
        .until(
            "two product cards",
            "return document.querySelectorAll('#log .product').length === 2 \
               && document.querySelector('#log .product .price').textContent === '28.00 EUR'",
        )
        .await;
    driver
        .until(
            "the agent's line after the cards",
            "return document.getElementById('log').textContent.includes('Laquelle vous tente')",
        )
        .await;
    driver
        .screenshot(&artifacts.join("commerce-cards.png"))
        .await;

    // "Add to cart" on the 300 g: the gateway answers with the cart, no LLM call.
    let calls = llm.count();
    driver.click("#log .product:nth-child(2) button").await;
    driver
        .until(
            "the cart",
            "const t = document.getElementById('log').textContent; \
             return t.includes('Figuier 300 g est dans votre panier') && t.includes('1 × Figuier 300 g, 38.00 EUR')",
        )
        .await;
    assert_eq!(llm.count(), calls, "the cart is the gateway's");
    driver
        .screenshot(&artifacts.join("commerce-cart.png"))
        .await;

    // In the customer's language: "Commander" (Checkout) goes to the agent, who reads the
    // cart and asks how to deliver.
    llm.script(vec![
        tool("view_cart", json!({})),
        tool(
            "offer_choices",
            json!({ "text": "Votre panier : 1 × Figuier 300 g, 38.00 EUR. Livraison ?", "options": ["Colissimo à domicile", "Retrait en boutique"] }),
        ),
    ]);
    driver
        .script(
            "const b = [...document.querySelectorAll('#log .choices button')].find(b => b.textContent === 'Commander'); b.click(); return true",
        )
        .await;
    driver
        .until(
            "the delivery choice",
            "return [...document.querySelectorAll('#log .choices button')].some(b => b.textContent === 'Retrait en boutique')",
        )
        .await;
    assert!(
        llm.calls()
            .last()
            .unwrap()
            .body
            .to_string()
            .contains("BOU-FIGUIER-300"),
        "the agent read the cart"
    );
    llm.script(vec![
        tool(
            "checkout",
            json!({ "items": [{ "sku": "BOU-FIGUIER-300", "quantity": 1 }], "delivery": "pickup" }),
        ),
        text("C'est noté : commande ML-30001, 38.00 EUR, à retirer en boutique."),
    ]);
    driver
        .script(
            "const b = [...document.querySelectorAll('#log .choices button')].find(b => b.textContent === 'Retrait en boutique'); b.click(); return true",
        )
        .await;
    driver
        .until(
            "the payment button after the reply",
            "const a = document.querySelector('#log a.cta'); return a !== null && a.textContent === 'Pay 38.00 EUR'",
        )
        .await;
    driver
        .screenshot(&artifacts.join("commerce-pay-button.png"))
        .await;
    let href = driver
        .script("return document.querySelector('#log a.cta').href")
        .await;
    let href = href.as_str().unwrap().to_string();
    assert_eq!(href, format!("{shop_url}/pay/ML-30001"));

    // The shop's payment page; "Pay" tells the gateway, and the confirmation reaches the chat.
    llm.script(vec![text(
        "Paiement bien reçu pour la commande ML-30001, merci ! Elle vous attend en boutique.",
    )]);
    driver.goto(&href).await;
    driver
        .until(
            "the payment page",
            "return document.body.textContent.includes('Figuier 300 g') && document.getElementById('pay') !== null",
        )
        .await;
    driver
        .screenshot(&artifacts.join("commerce-pay-page.png"))
        .await;
    driver.click("#pay").await;
    driver
        .until(
            "the payment is taken",
            "const d = document.getElementById('done'); return d !== null && d.textContent === 'Payment received'",
        )
        .await;
    eventually("the agents are told of the payment", || async {
        llm.calls().iter().any(|c| {
            let told = last_user_text(&c.body);
            told.contains("payment.succeeded") && told.contains("ML-30001")
        })
    })
    .await;
    driver.goto(&app.url("/chat/web")).await;
    driver
        .until(
            "the confirmation in the chat",
            "return document.getElementById('log').textContent.includes('Paiement bien reçu pour la commande ML-30001')",
        )
        .await;
    // The event itself is for the agents, not the visitor.
    let shown = driver
        .script("return document.getElementById('log').textContent")
        .await;
    assert!(
        !shown.as_str().unwrap().contains("payment.succeeded"),
        "{shown}"
    );
    driver
        .screenshot(&artifacts.join("commerce-paid.png"))
        .await;
    // At a phone's width: the confirmation, then the cards scrolled into view.
    driver.resize(390, 844).await;
    driver
        .script(
            "const l = document.getElementById('log'); l.scrollTop = l.scrollHeight; return true",
        )
        .await;
    driver
        .screenshot(&artifacts.join("commerce-paid-390.png"))
        .await;
    driver
        .script("document.querySelector('#log .products').scrollIntoView(); return true")
        .await;
    driver
        .screenshot(&artifacts.join("commerce-cards-390.png"))
        .await;
    driver.assert_no_csp_violation().await;
}
