//! Outbound HTTP on a store's behalf that cannot reach inside: a target is
//! checked when it is set and again at delivery, after the engine's own DNS
//! resolution (the connection uses the checked addresses, so a name that
//! rebinds to an internal address is refused), and redirects are not followed.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use futures_util::future::LocalBoxFuture;

use crate::domain::outbound::{Host, OutboundPolicy, Refusal, Target};

/// Turns a host name into addresses (the system's resolver, or a test's).
pub trait HostResolver: Send + Sync {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
}

/// The operating system's resolver (`getaddrinfo`, on tokio's blocking pool).
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A connection refused by the policy (found behind awc's resolver error).
#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub Refusal);

/// The policy and the resolver every outbound request goes through.
pub struct Outbound {
    policy: OutboundPolicy,
    resolver: Arc<dyn HostResolver>,
    /// How long resolving a target's name may take (`outbound.resolve_timeout_ms`).
    resolve_timeout: Duration,
}

impl Outbound {
    pub fn new(
        policy: OutboundPolicy,
        resolver: Arc<dyn HostResolver>,
        resolve_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            policy,
            resolver,
            resolve_timeout,
        })
    }

    /// Checks a target when it is set: its shape, a literal address, and the
    /// addresses its name resolves to now. A name that does not resolve is
    /// let through (delivery checks again).
    pub async fn vet(&self, url: &str) -> Result<(), Refusal> {
        let target = Target::parse(url)?;
        self.policy.check_target(&target)?;
        let Host::Name(name) = &target.host else {
            return Ok(());
        };
        let lookup = self.resolver.lookup(name, target.port);
        match tokio::time::timeout(self.resolve_timeout, lookup).await {
            Ok(Ok(addresses)) => {
                let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
                self.policy.check_resolved(name, &ips)
            }
            _ => Ok(()),
        }
    }

    /// Checks a target at delivery before connecting; names are checked by
    /// the client's resolver as the connection is made.
    pub fn check_target(&self, url: &str) -> Result<(), Refusal> {
        self.policy.check_target(&Target::parse(url)?)
    }

    /// An HTTP client whose every connection resolves through the policy
    /// and which never follows a redirect. Single-threaded, like awc.
    pub fn client(self: &Arc<Self>, timeout: Duration) -> awc::Client {
        let resolver = Resolver::custom(Guarded(self.clone()));
        let connector = awc::Connector::new()
            .connector(TcpConnector::new(resolver).service())
            .timeout(timeout);
        awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .timeout(timeout)
            .finish()
    }

    /// Whether an awc error is this policy's refusal.
    pub fn refusal(error: &awc::error::SendRequestError) -> Option<&Refusal> {
        match error {
            awc::error::SendRequestError::Connect(awc::error::ConnectError::Resolver(inner)) => {
                inner.downcast_ref::<Refused>().map(|r| &r.0)
            }
            _ => None,
        }
    }
}

/// awc's resolver: resolve, then refuse the lot if any address is internal.
struct Guarded(Arc<Outbound>);

impl Resolve for Guarded {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            let target = Target {
                host: Host::Name(name.clone()),
                port,
            };
            self.0.policy.check_target(&target).map_err(Refused)?;
            let lookup = self.0.resolver.lookup(&name, port);
            let addresses = tokio::time::timeout(self.0.resolve_timeout, lookup)
                .await
                .map_err(|_| format!("resolving {name} timed out"))??;
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            self.0.policy.check_resolved(&name, &ips).map_err(Refused)?;
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every name with fixed addresses.
    pub struct Fixed(pub Vec<IpAddr>);

    impl HostResolver for Fixed {
        fn lookup(
            &self,
            _host: &str,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
            let addresses = self.0.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            Box::pin(async move { Ok(addresses) })
        }
    }

    fn outbound(resolves_to: &str, allowed: &[&str]) -> Arc<Outbound> {
        Outbound::new(
            OutboundPolicy::new(allowed.iter().map(|n| n.parse().unwrap()).collect()),
            Arc::new(Fixed(vec![resolves_to.parse().unwrap()])),
            Duration::from_secs(3),
        )
    }

    #[actix_rt::test]
    async fn a_name_is_vetted_by_what_it_resolves_to() {
        let public = outbound("203.0.113.4", &[]);
        assert!(public.vet("https://hooks.example.com/x").await.is_ok());
        let rebinding = outbound("169.254.169.254", &[]);
        assert!(matches!(
            rebinding.vet("https://hooks.example.com/x").await,
            Err(Refusal::Internal { .. })
        ));
        let allowed = outbound("127.0.0.1", &["127.0.0.0/8"]);
        assert!(allowed.vet("http://receiver.test:9/x").await.is_ok());
    }

    #[actix_rt::test]
    async fn the_client_refuses_a_connection_its_resolver_finds_internal() {
        let outbound = outbound("127.0.0.1", &[]);
        let client = outbound.client(Duration::from_secs(2));
        let error = client
            .post("http://hooks.example.com:9/x")
            .send_body("{}")
            .await
            .unwrap_err();
        assert!(
            matches!(Outbound::refusal(&error), Some(Refusal::Internal { .. })),
            "{error:?}"
        );
    }
}
