//! Emulated networks for tests: network namespaces joined by veth links, routers with NAT
//! (port-preserving or symmetric), links that go down and up. Everything a [`Lab`] makes is
//! removed when it is dropped, also when the test fails.
//!
//! A test calls [`isolate_this_thread`] first, so the links it makes between its own thread's
//! namespace and the lab never touch the machine's interfaces. Needs root, iproute2 and (for
//! NAT) iptables.

use std::io;
use std::process::Command;

/// Moves the calling thread (and the processes and threads it starts from then on) into a new,
/// empty network namespace.
pub fn isolate_this_thread() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    run("ip", &["link", "set", "lo", "up"])
}

fn run(cmd: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(cmd).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Namespaces made for one test, deleted on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    made: Vec<String>,
}

/// One end of a veth link: namespace (`None`: the test thread's own), interface name and
/// address with prefix length (`10.0.0.1/24`).
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    /// The namespace.
    pub ns: Option<&'a str>,
    /// The interface.
    pub ifname: &'a str,
    /// Its address, CIDR notation.
    pub cidr: &'a str,
}

impl<'a> End<'a> {
    /// An end in `ns` (`None`: the test thread's namespace) named `ifname` at `cidr`.
    pub fn at(ns: Option<&'a str>, ifname: &'a str, cidr: &'a str) -> Self {
        Self { ns, ifname, cidr }
    }
}

impl Lab {
    /// A lab whose namespaces are named `x0x<tag><pid>-…`.
    pub fn new(tag: &str) -> Self {
        Self {
            prefix: format!("x0x{tag}{}-", std::process::id()),
            made: Vec::new(),
        }
    }

    /// A new namespace with its loopback up; returns its full name.
    pub fn namespace(&mut self, name: &str) -> io::Result<String> {
        let full = format!("{}{name}", self.prefix);
        run("ip", &["netns", "add", &full])?;
        self.made.push(full.clone());
        self.exec(&full, &["ip", "link", "set", "lo", "up"])?;
        Ok(full)
    }

    /// Runs a command inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> io::Result<()> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    fn in_ns(&self, ns: Option<&str>, cmd: &[&str]) -> io::Result<()> {
        match ns {
            Some(n) => self.exec(n, cmd),
            None => run(cmd[0], &cmd[1..]),
        }
    }

    /// A veth link between two namespaces, both ends addressed and up. Interface names must
    /// be unique across the lab (the peer end is named in the first end's namespace).
    pub fn link(&self, a: End<'_>, b: End<'_>) -> io::Result<()> {
        let mut add = vec![
            "ip", "link", "add", "name", a.ifname, "type", "veth", "peer", "name", b.ifname,
        ];
        if let Some(n) = b.ns {
            add.extend_from_slice(&["netns", n]);
        }
        self.in_ns(a.ns, &add)?;
        for e in [a, b] {
            self.in_ns(e.ns, &["ip", "addr", "add", e.cidr, "dev", e.ifname])?;
            self.in_ns(e.ns, &["ip", "link", "set", "dev", e.ifname, "up"])?;
        }
        Ok(())
    }

    /// The default route of `ns` goes via `gateway`.
    pub fn default_route(&self, ns: &str, gateway: &str) -> io::Result<()> {
        self.exec(ns, &["ip", "route", "add", "default", "via", gateway])
    }

    /// Makes `ns` a router that masquerades what leaves through `wan`: port-preserving
    /// (endpoint-independent mapping), or `symmetric` (a random port per mapping).
    pub fn nat(&self, ns: &str, wan: &str, symmetric: bool) -> io::Result<()> {
        self.exec(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let mut rule = vec![
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            wan,
            "-j",
            "MASQUERADE",
        ];
        if symmetric {
            rule.push("--random-fully");
        }
        self.exec(ns, &rule)
    }

    /// Sets interface `ifname` of `ns` up or down.
    pub fn set_link(&self, ns: &str, ifname: &str, up: bool) -> io::Result<()> {
        self.exec(
            ns,
            &["ip", "link", "set", ifname, if up { "up" } else { "down" }],
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &n]).status();
        }
    }
}
