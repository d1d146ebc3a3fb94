//! [`ObservedAddrs`]: the addresses peers see this node at.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::identity::MachineId;

/// Most observed addresses announced.
const MAX_ANNOUNCED: usize = 4;

/// One report.
#[derive(Debug, Clone, Copy)]
struct Report {
    addr: SocketAddr,
    /// The reporter is a machine this node dialled (chose), not one that dialled in.
    dialled: bool,
}

/// Each connected peer's report of where it sees this node (at most one per connection,
/// removed with it, so the map is bounded by the connection cap).
#[derive(Debug, Default)]
pub(crate) struct ObservedAddrs {
    by_peer: BTreeMap<MachineId, Report>,
}

impl ObservedAddrs {
    /// Records `peer`'s report. False if it already reported on this connection.
    pub(crate) fn report(&mut self, peer: MachineId, addr: SocketAddr, dialled: bool) -> bool {
        if self.by_peer.contains_key(&peer) {
            return false;
        }
        self.by_peer.insert(peer, Report { addr, dialled });
        true
    }

    /// `peer`'s connection went away.
    pub(crate) fn forget(&mut self, peer: &MachineId) {
        self.by_peer.remove(peer);
    }

    /// How many reports are held.
    pub(crate) fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// The addresses worth announcing: reported by a peer this node dialled, or by two peers;
    /// most reported first, at most four.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        let mut seen: BTreeMap<SocketAddr, (usize, bool)> = BTreeMap::new();
        for r in self.by_peer.values() {
            let e = seen.entry(r.addr).or_default();
            e.0 += 1;
            e.1 |= r.dialled;
        }
        let mut good: Vec<(usize, SocketAddr)> = seen
            .into_iter()
            .filter(|(_, (n, dialled))| *dialled || *n >= 2)
            .map(|(a, (n, _))| (n, a))
            .collect();
        good.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        good.into_iter()
            .map(|(_, a)| a)
            .take(MAX_ANNOUNCED)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(b: u8) -> MachineId {
        MachineId::from_bytes([b; 32])
    }

    #[test]
    fn one_inbound_peer_cannot_choose_our_address_but_a_dialled_one_or_two_agreeing_can() {
        let a: SocketAddr = "198.51.100.7:5483".parse().unwrap();
        let b: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let mut o = ObservedAddrs::default();
        assert!(o.report(m(1), b, false));
        assert!(o.addrs().is_empty(), "one inbound report is not enough");
        assert!(!o.report(m(1), a, true), "one report per connection");
        assert!(o.report(m(2), b, false));
        assert_eq!(o.addrs(), vec![b], "two agree");
        assert!(o.report(m(3), a, true));
        assert_eq!(o.addrs(), vec![b, a], "most reported first");
        o.forget(&m(2));
        assert_eq!(o.addrs(), vec![a]);
        assert_eq!(o.len(), 2);
    }
}
