use super::*;

#[test]
fn at_least_the_fifteen_promised_locales_are_there() {
    let tags: Vec<&str> = supported().collect();
    for tag in [
        "en", "es", "fr", "de", "it", "pt", "pt-BR", "nl", "pl", "tr", "ru", "ar", "hi", "ja", "zh",
    ] {
        assert!(tags.contains(&tag), "{tag}");
    }
    assert_eq!(tags[0], "en", "English is the fallback");
}

#[test]
fn a_tag_is_matched_whole_then_by_its_language() {
    assert_eq!(parse_locale("pt-br"), Some("pt-BR"));
    assert_eq!(parse_locale("PT"), Some("pt"));
    assert_eq!(parse_locale("pt-PT"), Some("pt"));
    assert_eq!(parse_locale("es-MX"), Some("es"));
    assert_eq!(parse_locale("en-GB"), Some("en"));
    assert_eq!(parse_locale("zh-Hans-CN"), Some("zh"));
    for unsupported in ["zh-TW", "zh-Hant", "xx", "", "e n", "en_US", "-", "toolongsubtag"] {
        assert_eq!(parse_locale(unsupported), None, "{unsupported:?}");
    }
}

#[test]
fn a_number_gets_its_countrys_language_else_english() {
    assert_eq!(locale_for_country(Some("BR")), "pt-BR");
    assert_eq!(locale_for_country(Some("MX")), "es");
    assert_eq!(locale_for_country(Some("FR")), "fr");
    assert_eq!(locale_for_country(Some("JP")), "ja");
    assert_eq!(locale_for_country(Some("US")), "en");
    assert_eq!(locale_for_country(Some("IN")), "en");
    assert_eq!(locale_for_country(None), "en");
}

#[test]
fn every_text_has_one_code_and_no_digit_of_its_own() {
    let texts = Texts::default();
    for tag in supported() {
        for channel in Channel::ALL {
            let text = texts.get(tag).text(channel);
            assert_eq!(text.matches(CODE).count(), 1, "{tag} {channel:?}");
            assert!(
                !text.replace(CODE, "").chars().any(|c| c.is_ascii_digit()),
                "{tag} {channel:?}"
            );
        }
    }
}

#[test]
fn every_sms_fits_one_segment_with_a_webotp_line() {
    let texts = Texts::default();
    for tag in supported() {
        let sms = texts.get(tag).render(Channel::Sms, "123456");
        let with_webotp = format!("{sms}\n\n@example.com #123456");
        let (encoding, units) = segments::measure(&with_webotp);
        assert_eq!(
            segments::segments(&with_webotp),
            1,
            "{tag}: {units} units of {encoding:?}: {with_webotp:?}"
        );
        // The longest code, without the WebOTP line.
        let longest = texts.get(tag).render(Channel::Sms, "1234567890");
        assert_eq!(segments::segments(&longest), 1, "{tag}: {longest:?}");
        // Latin-script languages that GSM-7 can write go out as GSM-7.
        if ["en", "fr", "de", "it", "nl"].contains(&tag) {
            assert_eq!(encoding, segments::Encoding::Gsm7, "{tag}");
        }
    }
}

#[test]
fn operator_files_override_one_text_each_and_bad_ones_are_named() {
    let dir = std::env::temp_dir().join(format!("texts-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("es.sms.txt"), "Código de Acme: {code}\n").unwrap();
    std::fs::write(dir.join("pt-BR.call.txt"), "Código da Acme: {code}.").unwrap();
    let texts = Texts::load(&dir).unwrap();
    assert_eq!(texts.get("es").render(Channel::Sms, "42"), "Código de Acme: 42");
    assert_eq!(
        texts.get("es").text(Channel::Whatsapp),
        Texts::default().get("es").text(Channel::Whatsapp)
    );
    assert!(texts.is_overridden("pt-BR", Channel::Call) && !texts.is_overridden("pt-BR", Channel::Sms));

    for (name, body, complaint) in [
        ("xx.sms.txt", "{code}", "not a supported locale"),
        ("es.fax.txt", "{code}", "sms, whatsapp or call"),
        ("es.sms.txt", "no code here", "must contain {code}"),
        ("readme.md", "", "must be named"),
    ] {
        let bad = dir.join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(name), body).unwrap();
        let err = Texts::load(&bad).unwrap_err();
        assert!(err.contains(name) && err.contains(complaint), "{name}: {err}");
        std::fs::remove_dir_all(&bad).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_call_says_the_code_digit_by_digit_twice_in_the_locales_voice() {
    let texts = Texts::default();
    let twiml = twiml::say_code(texts.get("de"), "482913");
    assert_eq!(
        twiml.matches("<say-as interpret-as=\"digits\">482913</say-as>").count(),
        2,
        "{twiml}"
    );
    assert_eq!(twiml.matches("language=\"de-DE\" voice=\"Polly.Vicki\"").count(), 2);
    assert!(twiml.contains("Ihr Bestätigungscode lautet <say-as"));
    assert!(twiml.starts_with("<?xml") && twiml.ends_with("</Response>"));
    let mut custom = Texts::default();
    custom.set("en", Channel::Call, "Code for <Acme & Co>: {code}").unwrap();
    let twiml = twiml::say_code(custom.get("en"), "1");
    assert!(twiml.contains("Code for &lt;Acme &amp; Co&gt;: <say-as"), "{twiml}");
}
