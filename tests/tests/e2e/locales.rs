//! Codes in the user's language: the locale a start asks for, else its number's country's,
//! else English; operators' texts from `TEMPLATES_DIR`; unsupported locales refused.

use serde_json::{Value, json};
use verify_tests::harness::{Options, TestApp, code_in, spawn_app, spawn_app_with};

/// Starts `phone` with `body`'s extra fields; returns the answer's body.
async fn start(app: &TestApp, phone: &str, extra: Value) -> Value {
    let mut body = json!({"phone_number": phone});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let response = app.post_json("/v1/verifications", &body).await;
    assert_eq!(response.status(), 202, "{phone} {extra}");
    response.json().await.unwrap()
}

/// The first SMS to `phone`, once it has come.
async fn sms(app: &TestApp, phone: &str) -> String {
    app.wait_for_code(phone, 1).await;
    app.fake.messages_to(phone)[0].body.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_locale_asked_for_then_the_countrys_then_english() {
    let app = spawn_app().await;
    let cases = [
        (
            "+14155552671",
            json!({"locale": "es"}),
            "es",
            "Tu código de verificación es ",
        ),
        (
            "+14155552672",
            json!({"locale": "pt-br"}),
            "pt-BR",
            "Seu código de verificação é ",
        ),
        (
            "+14155552673",
            json!({"locale": "es-MX"}),
            "es",
            "Tu código de verificación es ",
        ),
        ("+14155552674", json!({"locale": "ja"}), "ja", "認証コードは "),
        ("+33612345678", json!({}), "fr", "Votre code de vérification est "),
        ("+5511987654321", json!({}), "pt-BR", "Seu código de verificação é "),
        ("+14155552675", json!({}), "en", "Your verification code is "),
        (
            "+33612345679",
            json!({"locale": "de"}),
            "de",
            "Ihr Bestätigungscode lautet ",
        ),
    ];
    for (phone, extra, tag, text) in cases {
        let started = start(&app, phone, extra).await;
        assert_eq!(started["locale"], tag, "{phone}");
        let body = sms(&app, phone).await;
        assert!(body.starts_with(text), "{phone}: {body:?}");
        // The code is the last run of digits, whatever the language, and it checks.
        let code = code_in(&body).unwrap();
        let checked: Value = app.check(phone, &code).await.json().await.unwrap();
        assert_eq!(checked["status"], "approved", "{phone}: {body:?}");
        let id = started["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(app.get_verification(id).await["locale"], tag);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_locale_is_refused_and_nothing_is_stored() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    for locale in ["xx", "zh-TW", "en_US", ""] {
        let response = app
            .post_json(
                "/v1/verifications",
                &json!({"phone_number": "+14155552671", "locale": locale}),
            )
            .await;
        assert_eq!(response.status(), 400, "{locale:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_locale", "{locale:?}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("pt-BR") && message.contains("zh"), "{message}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_override_a_text_without_a_rebuild() {
    let dir = std::env::temp_dir().join(format!("templates-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("es.sms.txt"), "Acme: tu código es {code}. No lo compartas.\n").unwrap();
    let app = spawn_app_with(
        Options::default()
            .env("TEMPLATES_DIR", dir.display().to_string())
            .env("WEBOTP_DOMAIN", "acme.example"),
    )
    .await;
    start(&app, "+14155552671", json!({"locale": "es"})).await;
    let body = sms(&app, "+14155552671").await;
    let code = code_in(&body).unwrap();
    assert_eq!(
        body,
        format!("Acme: tu código es {code}. No lo compartas.\n\n@acme.example #{code}")
    );
    // Other languages keep their built-in text.
    start(&app, "+14155552672", json!({"locale": "fr"})).await;
    assert!(
        sms(&app, "+14155552672")
            .await
            .starts_with("Votre code de vérification est ")
    );
    app.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
