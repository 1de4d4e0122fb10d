//! Who gets a connection slot on the API's listener: at most `max_connections` served in
//! full, at most `max_connections_per_address` of them from one client address, and past the
//! full cap a small reserve that answers only the probes, one connection per address. A
//! client holding many connections (slow heads, responses it never reads) can fill its own
//! share, never the whole server, and a health probe from elsewhere always finds a slot.
//!
//! An address counts as its client: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
//! dual-stack socket reports IPv4 peers) counts as `a.b.c.d`, and an IPv6 address counts as
//! its /64, the smallest block one subscriber is handed, so a client cannot dodge the
//! per-address cap by dialling from many addresses of its own prefix.
//!
//! Pure bookkeeping under one mutex; the listener asks [`Slots::admit`] after each accept and
//! drops the [`Ticket`] when the connection ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The caps one listener admits under.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Connections served in full at once.
    pub max: usize,
    /// Of those, from one address; `None` (the unix socket) counts no address.
    pub per_address: usize,
    /// Past `max`, connections that may ask only for the probes, one per address.
    pub reserve: usize,
    /// Addresses counted only against `max` (trusted reverse proxies speak for many clients).
    pub exempt: Vec<IpAddr>,
}

/// What a new connection gets.
#[derive(Debug)]
pub enum Admit {
    /// Served in full.
    Full(Ticket),
    /// Served the probes only, one request, no keep-alive.
    Reserve(Ticket),
    /// Not served: the reason, for the one-line answer.
    Refused(Refusal),
}

/// Why a connection was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address holds `max_connections_per_address` already.
    PerAddress,
    /// The full cap and the reserve are both taken.
    Full,
}

#[derive(Debug, Default)]
struct Counts {
    full: usize,
    reserve: usize,
    by_address: HashMap<IpAddr, usize>,
    reserve_addresses: HashMap<IpAddr, usize>,
}

/// The listener's slot table.
#[derive(Debug)]
pub struct Slots {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// One admitted connection's slot, given back on drop.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    address: Option<IpAddr>,
    reserve: bool,
}

impl Slots {
    /// An empty table.
    pub fn new(caps: Caps) -> Arc<Slots> {
        Arc::new(Slots {
            caps,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every change is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a new connection could be admitted somewhere (full or reserve).
    #[cfg(test)]
    pub fn has_room(&self) -> bool {
        let c = self.lock();
        c.full < self.caps.max || c.reserve < self.caps.reserve
    }

    /// Admits a connection from `address` (`None`: no address, as on the unix socket).
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Admit {
        let address = address.map(client_of);
        let mut c = self.lock();
        let counted = address.filter(|a| !self.caps.exempt.iter().any(|e| client_of(*e) == *a));
        let held = counted.map_or(0, |a| c.by_address.get(&a).copied().unwrap_or(0));
        if counted.is_some() && held >= self.caps.per_address {
            return Admit::Refused(Refusal::PerAddress);
        }
        if c.full < self.caps.max {
            c.full += 1;
            if let Some(a) = counted {
                *c.by_address.entry(a).or_default() += 1;
            }
            return Admit::Full(self.ticket(counted, false));
        }
        let in_reserve = address.map_or(0, |a| c.reserve_addresses.get(&a).copied().unwrap_or(0));
        if c.reserve >= self.caps.reserve || in_reserve > 0 {
            return Admit::Refused(Refusal::Full);
        }
        c.reserve += 1;
        if let Some(a) = address {
            *c.reserve_addresses.entry(a).or_default() += 1;
        }
        Admit::Reserve(self.ticket(address, true))
    }

    fn ticket(self: &Arc<Self>, address: Option<IpAddr>, reserve: bool) -> Ticket {
        Ticket {
            slots: self.clone(),
            address,
            reserve,
        }
    }

    fn release(&self, address: Option<IpAddr>, reserve: bool) {
        let mut guard = self.lock();
        let c = &mut *guard;
        if reserve {
            c.reserve -= 1;
            forget_one(&mut c.reserve_addresses, address);
        } else {
            c.full -= 1;
            forget_one(&mut c.by_address, address);
        }
    }

    /// (full, reserve) connections held now.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let c = self.lock();
        (c.full, c.reserve)
    }
}

/// The client an address counts as: IPv4-mapped IPv6 as its IPv4 address, other IPv6 as its
/// /64 (the host bits zeroed), IPv4 as itself.
pub fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// One connection of `address` fewer in `by`; an address with none left is dropped, so the
/// table is as large as the addresses connected now.
fn forget_one(by: &mut HashMap<IpAddr, usize>, address: Option<IpAddr>) {
    let Some(a) = address else { return };
    if let Some(n) = by.get_mut(&a) {
        *n -= 1;
        if *n == 0 {
            by.remove(&a);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slots.release(self.address, self.reserve);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    fn caps(max: usize, per_address: usize, reserve: usize) -> Arc<Slots> {
        Slots::new(Caps {
            max,
            per_address,
            reserve,
            exempt: vec![IpAddr::from([10, 0, 0, 1])],
        })
    }

    #[test]
    fn one_address_fills_its_share_only() {
        let s = caps(10, 3, 2);
        let held: Vec<_> = (0..3).map(|_| s.admit(ip(2))).collect();
        assert!(held.iter().all(|a| matches!(a, Admit::Full(_))));
        assert!(matches!(
            s.admit(ip(2)),
            Admit::Refused(Refusal::PerAddress)
        ));
        let other = s.admit(ip(3));
        assert!(matches!(other, Admit::Full(_)));
        drop(held);
        assert_eq!(s.held(), (1, 0));
        assert!(matches!(s.admit(ip(2)), Admit::Full(_)));
    }

    #[test]
    fn past_the_cap_the_reserve_takes_one_connection_per_address() {
        let s = caps(2, 5, 2);
        let _full = [s.admit(ip(2)), s.admit(ip(2))];
        let first = s.admit(ip(1));
        assert!(matches!(first, Admit::Reserve(_)), "{first:?}");
        assert!(matches!(s.admit(ip(1)), Admit::Refused(Refusal::Full)));
        let other = s.admit(ip(3));
        assert!(matches!(other, Admit::Reserve(_)), "{other:?}");
        assert!(!s.has_room());
        assert!(matches!(s.admit(ip(4)), Admit::Refused(Refusal::Full)));
        drop(first);
        assert!(s.has_room());
        assert!(matches!(s.admit(ip(1)), Admit::Reserve(_)));
    }

    #[test]
    fn an_address_at_its_share_gets_no_reserve_slot() {
        // The reserve is for everyone else: a flood at its cap cannot take it too.
        let s = caps(2, 2, 4);
        let _full = [s.admit(ip(2)), s.admit(ip(2))];
        assert!(matches!(
            s.admit(ip(2)),
            Admit::Refused(Refusal::PerAddress)
        ));
        assert_eq!(s.held(), (2, 0));
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_its_ipv4_address() {
        let s = caps(10, 2, 0);
        let mapped = Some(IpAddr::from(
            "::ffff:127.0.0.2".parse::<Ipv6Addr>().unwrap(),
        ));
        let _held = [s.admit(ip(2)), s.admit(mapped)];
        assert!(matches!(
            s.admit(mapped),
            Admit::Refused(Refusal::PerAddress)
        ));
        assert!(matches!(
            s.admit(ip(2)),
            Admit::Refused(Refusal::PerAddress)
        ));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_one_share() {
        let s = caps(10, 2, 0);
        let v6 = |text: &str| Some(IpAddr::from(text.parse::<Ipv6Addr>().unwrap()));
        let _held = [
            s.admit(v6("2001:db8:1:2::1")),
            s.admit(v6("2001:db8:1:2:aaaa::9")),
        ];
        assert!(matches!(
            s.admit(v6("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            Admit::Refused(Refusal::PerAddress)
        ));
        // The next /64 is another client.
        assert!(matches!(s.admit(v6("2001:db8:1:3::1")), Admit::Full(_)));
    }

    #[test]
    fn an_exempt_address_is_exempt_in_its_mapped_form_too() {
        let s = caps(10, 1, 0);
        let mapped = Some(IpAddr::from("::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap()));
        let held: Vec<_> = (0..3).map(|_| s.admit(mapped)).collect();
        assert!(held.iter().all(|a| matches!(a, Admit::Full(_))));
    }

    #[test]
    fn exempt_and_addressless_connections_count_against_the_cap_only() {
        let s = caps(4, 1, 1);
        let proxy = Some(IpAddr::from([10, 0, 0, 1]));
        let held: Vec<_> = (0..3).map(|_| s.admit(proxy)).collect();
        assert!(held.iter().all(|a| matches!(a, Admit::Full(_))));
        let fourth = s.admit(None);
        assert!(matches!(fourth, Admit::Full(_)));
        let reserve = s.admit(None);
        assert!(matches!(reserve, Admit::Reserve(_)));
        assert!(matches!(s.admit(None), Admit::Refused(Refusal::Full)));
    }
}
