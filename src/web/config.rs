//! `[web]`: the operator review page: where it listens, the defect classes, the review queue's margin and the
//! session length. Parsed into [`RawWeb`], validated into [`WebConfig`].

use std::net::SocketAddr;

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    enabled: Option<bool>,
    bind: Option<String>,
    port: Option<u16>,
    defect_classes: Option<Vec<String>>,
    uncertain_margin: Option<f32>,
    session_hours: Option<u64>,
    secure_cookies: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
}

/// The operator review web page (`[web]`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Whether `station run` serves it (`station review` always does). Off when the section is absent.
    pub enabled: bool,
    /// Where to listen; port 0 takes any free port (the address is logged).
    pub listen: SocketAddr,
    /// Defect classes an operator may confirm; also the dataset export's folder names.
    pub defect_classes: Vec<String>,
    /// A passed part whose score is at least `threshold * (1 - uncertain_margin)` is queued for review.
    pub uncertain_margin: f32,
    pub session_hours: u64,
    /// Mark the session cookie Secure (the page is served behind a TLS reverse proxy).
    pub secure_cookies: bool,
    /// Host names the page answers to besides IP addresses and `localhost` (a request naming another host is
    /// refused: it is how a DNS-rebinding page would reach the station).
    pub allowed_hosts: Vec<String>,
}

pub fn validate(p: &mut Problems, raw: RawWeb, present: bool) -> WebConfig {
    let bind = raw.bind.unwrap_or_else(|| "127.0.0.1".into());
    let ip = bind.parse().unwrap_or_else(|_| {
        p.problem(
            "web.bind",
            format!("expected an IP address like \"127.0.0.1\", got \"{bind}\""),
        );
        std::net::Ipv4Addr::LOCALHOST.into()
    });
    let defect_classes = raw
        .defect_classes
        .unwrap_or_else(|| vec!["scratch".into(), "spot".into(), "crack".into()]);
    if defect_classes.is_empty() {
        p.problem("web.defect_classes", "expected at least one defect class");
    }
    for class in &defect_classes {
        if !crate::review::valid_class(class) {
            p.problem(
                "web.defect_classes",
                format!("expected names of lower-case letters, digits, '_' or '-' other than \"good\" (they become folder names), got \"{class}\""),
            );
        }
    }
    let uncertain_margin = raw.uncertain_margin.unwrap_or(0.1);
    if !(0.0..1.0).contains(&uncertain_margin) {
        p.problem(
            "web.uncertain_margin",
            format!("expected a fraction from 0 up to (not including) 1, got {uncertain_margin}"),
        );
    }
    WebConfig {
        enabled: raw.enabled.unwrap_or(present),
        listen: SocketAddr::new(ip, raw.port.unwrap_or(8080)),
        defect_classes,
        uncertain_margin,
        session_hours: p.positive("web.session_hours", raw.session_hours, 12),
        secure_cookies: raw.secure_cookies.unwrap_or(false),
        allowed_hosts: raw
            .allowed_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    }
}
