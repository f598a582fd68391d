//! Spreading a connector's channels over connections and its connections over source
//! addresses (SPEC §7): as few connections as `max_channels_per_connection` allows,
//! channels spread evenly over them, and connections dealt round-robin over the `bind`
//! addresses so that no address carries more than `max_connections_per_ip`. Pure: the
//! plan is made once, when the configuration is read, so a plan that cannot work is a
//! configuration error `flotilla check` reports.

use std::net::IpAddr;

/// One channel to join, with its key if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: String,
    pub key: Option<String>,
}

/// One planned connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// 0-based; also picks the nick (`nick`, `nick2`, `nick3`, …).
    pub index: usize,
    /// Local source address, or `None` for the system's choice.
    pub bind: Option<IpAddr>,
    pub channels: Vec<ChannelSpec>,
}

/// Why no plan fits the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{channels} channels at {per_connection} per connection need {connections} connections, but {addresses} source address(es) at max_connections_per_ip {per_ip} allow only {capacity}; add addresses to `bind` or raise a limit"
    )]
    TooFewAddresses {
        channels: usize,
        per_connection: usize,
        connections: usize,
        addresses: usize,
        per_ip: usize,
        capacity: usize,
    },
    #[error("max_channels_per_connection must be at least 1")]
    ZeroChannelsPerConnection,
}

/// Plans the connections. `per_ip` 0 means no limit. `min_connections` lets a
/// connector ask for more connections than its channels need (at least one is made,
/// even for no channels: the bot is on the network for private messages).
pub fn plan(
    channels: &[ChannelSpec],
    per_connection: usize,
    bind: &[IpAddr],
    per_ip: usize,
    min_connections: usize,
) -> Result<Vec<ConnectionPlan>, PlanError> {
    if per_connection == 0 {
        return Err(PlanError::ZeroChannelsPerConnection);
    }
    let connections = channels.len().div_ceil(per_connection).max(min_connections).max(1);
    let addresses = bind.len().max(1);
    if per_ip > 0 && connections > addresses * per_ip {
        return Err(PlanError::TooFewAddresses {
            channels: channels.len(),
            per_connection,
            connections,
            addresses,
            per_ip,
            capacity: addresses * per_ip,
        });
    }
    // Even spread: the first `extra` connections get one channel more.
    let base = channels.len() / connections;
    let extra = channels.len() % connections;
    let mut rest = channels.iter();
    Ok((0..connections)
        .map(|index| ConnectionPlan {
            index,
            bind: if bind.is_empty() { None } else { Some(bind[index % bind.len()]) },
            channels: rest.by_ref().take(base + usize::from(index < extra)).cloned().collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(n: usize) -> Vec<ChannelSpec> {
        (0..n).map(|i| ChannelSpec { name: format!("#c{i}"), key: None }).collect()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// (channels, per connection, bind, per ip, min) → per connection: "addr:count".
    fn check(n: usize, per_connection: usize, bind: &[&str], per_ip: usize, min: usize, expect: &[&str]) {
        let plans = plan(&channels(n), per_connection, &ips(bind), per_ip, min).unwrap();
        let got: Vec<String> = plans
            .iter()
            .map(|p| format!("{}:{}", p.bind.map_or("-".to_string(), |a| a.to_string()), p.channels.len()))
            .collect();
        assert_eq!(got, expect, "{n} channels, {per_connection}/conn, bind {bind:?}, {per_ip}/ip, min {min}");
        let all: Vec<&str> = plans.iter().flat_map(|p| p.channels.iter().map(|c| c.name.as_str())).collect();
        let want: Vec<String> = (0..n).map(|i| format!("#c{i}")).collect();
        assert_eq!(all, want, "every channel exactly once, in order");
        assert!(plans.iter().enumerate().all(|(i, p)| p.index == i));
    }

    #[test]
    fn plans() {
        check(0, 20, &[], 3, 0, &["-:0"]);
        check(3, 20, &[], 3, 0, &["-:3"]);
        check(130, 50, &[], 3, 0, &["-:44", "-:43", "-:43"]);
        check(
            7,
            1,
            &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
            3,
            0,
            &["127.0.0.2:1", "127.0.0.3:1", "127.0.0.4:1", "127.0.0.2:1", "127.0.0.3:1", "127.0.0.4:1", "127.0.0.2:1"],
        );
        check(5, 2, &["127.0.0.2", "127.0.0.3"], 2, 0, &["127.0.0.2:2", "127.0.0.3:2", "127.0.0.2:1"]);
        check(2, 10, &["127.0.0.2"], 3, 3, &["127.0.0.2:1", "127.0.0.2:1", "127.0.0.2:0"]);
        // No per-IP limit.
        check(10, 1, &[], 0, 0, &["-:1"; 10]);
    }

    #[test]
    fn limits_that_cannot_be_met_are_errors() {
        let err = plan(&channels(10), 1, &ips(&["127.0.0.2", "127.0.0.3"]), 3, 0).unwrap_err();
        assert_eq!(
            err,
            PlanError::TooFewAddresses {
                channels: 10,
                per_connection: 1,
                connections: 10,
                addresses: 2,
                per_ip: 3,
                capacity: 6
            }
        );
        assert!(err.to_string().contains("need 10 connections"), "{err}");
        assert_eq!(plan(&channels(1), 0, &[], 3, 0), Err(PlanError::ZeroChannelsPerConnection));
        assert!(plan(&channels(4), 1, &[], 3, 0).is_err());
    }
}
