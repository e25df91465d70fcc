//! What `concierge serve` prints once it listens: the addresses a newcomer opens (the web
//! chat, the console, `/metrics` or why it is not served), from the sockets actually bound.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where `/metrics` is served, as `[server]` decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAt {
    /// On `metrics_bind`, a port of its own (behind the token too when one is set).
    OwnPort { addr: SocketAddr, token: bool },
    /// On the public port, behind `metrics_token`.
    PublicPort,
    /// Neither `metrics_bind` nor `metrics_token` is set.
    NotServed,
}

/// The start-up lines: one address per page that matters.
#[derive(Debug, Clone, Copy)]
pub struct Welcome {
    /// The public port, as bound.
    pub addr: SocketAddr,
    pub metrics: MetricsAt,
    /// Whether a web chat channel is configured (else `/chat` is a 404).
    pub webchat: bool,
}

/// A URL for a bound address: one a browser on this machine can open (`0.0.0.0` and `::`
/// listen on every interface, so the loopback address is shown with the real port).
fn base(addr: SocketAddr) -> String {
    let shown = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    format!("http://{shown}")
}

impl fmt::Display for Welcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = base(self.addr);
        if self.addr.ip().is_unspecified() {
            writeln!(
                f,
                "Concierge serves {public} (bound to {}: every interface)",
                self.addr
            )?;
        } else {
            writeln!(f, "Concierge serves {public}")?;
        }
        if self.webchat {
            writeln!(f, "  web chat: {public}/chat")?;
        } else {
            writeln!(
                f,
                "  web chat: none (add channels/web.toml holding kind = \"webchat\")"
            )?;
        }
        writeln!(
            f,
            "  console:  {public}/console (sign in with a token from `concierge token create NAME`)"
        )?;
        match self.metrics {
            MetricsAt::OwnPort { addr, token } => write!(
                f,
                "  metrics:  {}/metrics ([server] metrics_bind{})",
                base(addr),
                if token { ", behind metrics_token" } else { "" }
            ),
            MetricsAt::PublicPort => write!(
                f,
                "  metrics:  {public}/metrics (behind [server] metrics_token)"
            ),
            MetricsAt::NotServed => write!(
                f,
                "  metrics:  not served (set [server] metrics_bind or metrics_token)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(addr: &str, metrics: MetricsAt) -> String {
        Welcome {
            addr: addr.parse().unwrap(),
            metrics,
            webchat: true,
        }
        .to_string()
    }

    #[test]
    fn every_page_is_listed_with_the_bound_port() {
        let text = welcome("127.0.0.1:41234", MetricsAt::PublicPort);
        assert!(text.contains("http://127.0.0.1:41234/chat"), "{text}");
        assert!(text.contains("http://127.0.0.1:41234/console"), "{text}");
        assert!(
            text.contains("http://127.0.0.1:41234/metrics (behind"),
            "{text}"
        );
    }

    #[test]
    fn metrics_on_its_own_port_or_nowhere_is_said() {
        let own = MetricsAt::OwnPort {
            addr: "127.0.0.1:9191".parse().unwrap(),
            token: false,
        };
        let text = welcome("127.0.0.1:8080", own);
        assert!(text.contains("http://127.0.0.1:9191/metrics"), "{text}");
        let text = welcome("127.0.0.1:8080", MetricsAt::NotServed);
        assert!(text.contains("metrics:  not served"), "{text}");
    }

    #[test]
    fn every_interface_is_shown_as_loopback_with_the_real_port() {
        let text = welcome("0.0.0.0:8080", MetricsAt::NotServed);
        assert!(text.contains("http://127.0.0.1:8080/chat"), "{text}");
        assert!(text.contains("0.0.0.0:8080: every interface"), "{text}");
        let text = welcome("[::]:8080", MetricsAt::NotServed);
        assert!(text.contains("http://[::1]:8080/chat"), "{text}");
    }
}
