//! The network faults, built into the daemon: `net-loss` drops a share of the packets a
//! filter matches, `net-partition` drops all of them (both ways), `net-reject` answers
//! them (a TCP reset, an ICMP port unreachable) instead of silence; `net-bandwidth`
//! limits what an interface sends (tc's tbf). `net-delay` refuses, saying why, on a
//! kernel without netem. `net-proxy` turns a toxic on in one of the daemon's TCP
//! proxies (`proxy`: latency, bandwidth, timeout, reset, down, ...).
//!
//! ```ron
//! faults: {
//!     "flaky-dns": (plugin: "net-loss", config: (
//!         percent: 30,                 // required: 0.01 to 100
//!         direction: "out",            // in, out or both (default)
//!         protocol: "udp",             // tcp, udp, icmp or any (default)
//!         ports: [53],                 // at either end; ranges as "8000-8100"
//!         peers: ["10.0.0.0/8"],       // the other end: addresses or CIDRs
//!         duration: "2m",              // default 1m, at most 1h
//!     )),
//!     "db-split": (plugin: "net-partition", config: (peers: ["10.0.0.5"], ports: [5432])),
//!     "refused": (plugin: "net-reject", config: (protocol: "tcp", ports: [6379])),
//! },
//! ```
//!
//! Every rule lives in the nftables table `inet nightmare_monkey`, in chains of the
//! fault's own, so a revert deletes exactly what the fault added and nothing of the
//! host's rules. The faults inject in two phases: the chains and the script are chosen
//! (and journaled by the host) before they are applied, so a crash at any moment leaves
//! the journal with what removes them. SSH (TCP port 22) and the daemon's own listening
//! ports are spared unless `spare_ssh: false` / `spare_api: false`; a filter that
//! matches nothing is refused. They need `CAP_NET_ADMIN`; they speak to nf_tables over
//! netlink in-process (the dry run prints the same rules as an `nft` script).
//!
//! One crate holds several faults, so it is built into the daemon only: a plugin file
//! exports exactly one fault.

mod bandwidth;
mod filter;
mod netem;
mod netns;
mod nfexpr;
mod nfnetlink;
mod nft;
mod own;
mod packets;
pub mod proxy;
mod qdisc;
mod rules;
mod sockdiag;
#[cfg(test)]
mod testns;

use nightmare_monkey_plugin_api::{
    abi::PluginRef,
    sdk::{self, FaultPlugin, Outcome, PluginError, Request},
};

pub use bandwidth::{BandwidthConfig, NetBandwidth};
pub use filter::Config;
pub use netem::{DelayConfig, NetDelay};
pub use own::{declare_listening, declare_peers};
pub use packets::{Action, PacketFault};

/// Declares one packet fault over [`PacketFault`].
macro_rules! packet_fault {
    ($(#[$doc:meta])* $name:ident, $action:expr, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(PacketFault);

        impl FaultPlugin for $name {
            const NAME: &'static str = $action.name();
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const DESCRIPTION: &'static str = $description;
            const PREPARES: bool = true;
            type Config = Config;

            fn new(config: Config) -> Result<Self, PluginError> {
                PacketFault::new($action, config).map(Self)
            }

            fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
                self.0.inject(request)
            }

            fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
                self.0.prepare(request)
            }

            fn apply(
                &self,
                _request: &Request,
                prepared: &serde_json::Value,
            ) -> Result<Outcome, PluginError> {
                self.0.apply(prepared)
            }

            fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
                packets::revert(state)
            }
        }
    };
}

packet_fault!(
    /// `net-loss`: drops a share of the matching packets.
    NetLoss,
    Action::Loss(0),
    "drops a share of the packets a filter matches (nftables)"
);
packet_fault!(
    /// `net-partition`: drops every matching packet, both ways by default.
    NetPartition,
    Action::Partition,
    "cuts this host off from the given peers and ports (nftables)"
);
packet_fault!(
    /// `net-reject`: answers matching packets with a TCP reset or an ICMP unreachable.
    NetReject,
    Action::Reject,
    "refuses the packets a filter matches: TCP reset, ICMP port unreachable (nftables)"
);

/// The root modules of the network faults, for the host to link: name and module.
pub fn plugin_modules() -> [(&'static str, PluginRef); 6] {
    [
        (NetLoss::NAME, sdk::root_module::<NetLoss>()),
        (NetPartition::NAME, sdk::root_module::<NetPartition>()),
        (NetReject::NAME, sdk::root_module::<NetReject>()),
        (NetBandwidth::NAME, sdk::root_module::<NetBandwidth>()),
        (NetDelay::NAME, sdk::root_module::<NetDelay>()),
        (proxy::NetProxy::NAME, sdk::root_module::<proxy::NetProxy>()),
    ]
}
