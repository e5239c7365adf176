//! The built-in texts of every supported locale: the SMS (and the WhatsApp body when no
//! approved template is configured) and the sentence a call speaks, each with `{code}` where
//! the code goes; the voice that speaks it; the countries whose numbers get it by default.
//!
//! The wording is the short form verification texts take in each language: the word for
//! "code" next to the code (what phones' code autofill looks for), nothing after the code but
//! words, so the code is the last run of digits. Each stays within one SMS segment with a
//! WebOTP line for a short domain ([`super::segments`]).

/// One locale's texts.
#[derive(Debug, PartialEq, Eq)]
pub struct Builtin {
    /// BCP 47 tag, as the API takes and shows it.
    pub tag: &'static str,
    /// The language's name in itself, for people choosing one.
    pub name: &'static str,
    /// SMS and WhatsApp body.
    pub message: &'static str,
    /// What a call says, `{code}` spoken digit by digit.
    pub call: &'static str,
    /// `<Say language>`: one of the languages Twilio's text-to-speech lists.
    pub voice_language: &'static str,
    /// `<Say voice>`: an Amazon Polly standard voice of that language.
    pub voice: &'static str,
    /// ISO 3166 countries whose numbers get this locale when a start names none.
    pub countries: &'static [&'static str],
}

pub const BUILTIN: &[Builtin] = &[
    Builtin {
        tag: "en",
        name: "English",
        message: "Your verification code is {code}",
        call: "Your verification code is {code}.",
        voice_language: "en-US",
        voice: "Polly.Joanna",
        countries: &[],
    },
    Builtin {
        tag: "es",
        name: "Español",
        message: "Tu código de verificación es {code}",
        call: "Tu código de verificación es {code}.",
        voice_language: "es-ES",
        voice: "Polly.Lucia",
        countries: &[
            "ES", "MX", "AR", "CO", "PE", "VE", "CL", "EC", "GT", "CU", "BO", "DO", "HN", "PY", "SV", "NI", "CR", "PA",
            "UY", "GQ",
        ],
    },
    Builtin {
        tag: "fr",
        name: "Français",
        message: "Votre code de vérification est {code}",
        call: "Votre code de vérification est {code}.",
        voice_language: "fr-FR",
        voice: "Polly.Lea",
        countries: &[
            "FR", "MC", "LU", "SN", "CI", "CM", "ML", "BF", "NE", "TG", "BJ", "GA", "CG", "CD", "MG", "RE", "GP", "MQ",
            "GF", "NC", "PF",
        ],
    },
    Builtin {
        tag: "de",
        name: "Deutsch",
        message: "Ihr Bestätigungscode lautet {code}",
        call: "Ihr Bestätigungscode lautet {code}.",
        voice_language: "de-DE",
        voice: "Polly.Vicki",
        countries: &["DE", "AT", "LI"],
    },
    Builtin {
        tag: "it",
        name: "Italiano",
        message: "Il tuo codice di verifica è {code}",
        call: "Il tuo codice di verifica è {code}.",
        voice_language: "it-IT",
        voice: "Polly.Bianca",
        countries: &["IT", "SM", "VA"],
    },
    Builtin {
        tag: "pt",
        name: "Português",
        message: "O seu código de verificação é {code}",
        call: "O seu código de verificação é {code}.",
        voice_language: "pt-PT",
        voice: "Polly.Ines",
        countries: &["PT", "AO", "MZ", "CV", "GW", "ST", "TL"],
    },
    Builtin {
        tag: "pt-BR",
        name: "Português (Brasil)",
        message: "Seu código de verificação é {code}",
        call: "Seu código de verificação é {code}.",
        voice_language: "pt-BR",
        voice: "Polly.Camila",
        countries: &["BR"],
    },
    Builtin {
        tag: "nl",
        name: "Nederlands",
        message: "Je verificatiecode is {code}",
        call: "Je verificatiecode is {code}.",
        voice_language: "nl-NL",
        voice: "Polly.Lotte",
        countries: &["NL", "SR", "AW", "CW", "SX"],
    },
    Builtin {
        tag: "pl",
        name: "Polski",
        message: "Twój kod weryfikacyjny to {code}",
        call: "Twój kod weryfikacyjny to {code}.",
        voice_language: "pl-PL",
        voice: "Polly.Ewa",
        countries: &["PL"],
    },
    Builtin {
        tag: "tr",
        name: "Türkçe",
        message: "Doğrulama kodunuz: {code}",
        call: "Doğrulama kodunuz: {code}.",
        voice_language: "tr-TR",
        voice: "Polly.Filiz",
        countries: &["TR", "CY"],
    },
    Builtin {
        tag: "ru",
        name: "Русский",
        message: "Ваш код подтверждения: {code}",
        call: "Ваш код подтверждения: {code}.",
        voice_language: "ru-RU",
        voice: "Polly.Tatyana",
        countries: &["RU", "BY", "KZ", "KG"],
    },
    Builtin {
        tag: "ar",
        name: "العربية",
        message: "رمز التحقق الخاص بك هو {code}",
        call: "رمز التحقق الخاص بك هو {code}.",
        voice_language: "arb",
        voice: "Polly.Zeina",
        countries: &[
            "SA", "AE", "EG", "IQ", "JO", "KW", "LB", "LY", "MA", "DZ", "TN", "OM", "QA", "BH", "YE", "SY", "SD", "PS",
            "MR",
        ],
    },
    Builtin {
        tag: "hi",
        name: "हिन्दी",
        message: "आपका सत्यापन कोड {code} है",
        call: "आपका सत्यापन कोड है {code}.",
        voice_language: "hi-IN",
        voice: "Polly.Aditi",
        // Verification texts in India are mostly sent, and expected, in English: Hindi is
        // there for a start that asks for it.
        countries: &[],
    },
    Builtin {
        tag: "ja",
        name: "日本語",
        message: "認証コードは {code} です",
        call: "認証コードは {code} です。",
        voice_language: "ja-JP",
        voice: "Polly.Mizuki",
        countries: &["JP"],
    },
    Builtin {
        tag: "zh",
        name: "中文（简体）",
        message: "您的验证码是 {code}",
        call: "您的验证码是 {code}。",
        voice_language: "cmn-CN",
        voice: "Polly.Zhiyu",
        countries: &["CN", "SG"],
    },
];
