//! TLS 1.3 with RFC 7250 raw public keys: the machine's ML-DSA-65 key is the QUIC identity.
//!
//! * Each side presents its machine key as a raw public key (the "certificate" is the key's
//!   SubjectPublicKeyInfo) and signs the handshake with pure ML-DSA-65 (`mldsa65`, 0x0905).
//!   Authentication is mutual: the server requires a client key.
//! * Both verifiers accept only that scheme, refuse TLS 1.2 and certificate chains, and check
//!   the signature with [`PublicKey::verify_tls13`]. Which machines to talk to is the node's
//!   decision, so the server accepts any valid ML-DSA-65 key.
//! * When the node dials with an expected [`MachineId`], the client puts it in the SNI
//!   ([`server_name`]: two 32-hex-digit labels under `x0x.invalid`) and its verifier refuses a
//!   server whose key hashes to another id — the connection fails in the handshake.
//! * After the handshake the peer's key is in [`quinn::Connection::peer_identity`];
//!   [`peer_machine_id`] turns it into the [`MachineId`] the node is told.
//!
//! * Key exchange is hybrid X25519 + ML-KEM-768 ([`KEY_EXCHANGE`], aws-lc-rs), so the
//!   channel's confidentiality is post-quantum as well as its authentication. A classical-only
//!   peer is refused; each connection records the group its handshake used
//!   ([`KeyExchangeRecord`]).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
use rustls::crypto::{
    ActiveKeyExchange, CompletedKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup,
};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, SignatureAlgorithm,
    SignatureScheme,
};
use x0x_proto::identity::{MachineId, MachineKeypair, PublicKey};

use crate::error::TlsError;
use crate::network::NetworkConfig;

/// The ALPN protocol id of x0x-rs over QUIC.
pub const ALPN: &[u8] = b"x0x-rs/1";

/// The SNI suffix every x0x-rs server name ends with.
const SNI_SUFFIX: &str = ".x0x.invalid";
/// The SNI of a dial that expects no particular machine.
const SNI_ANY: &str = "any.x0x.invalid";

/// The TLS signature scheme of ML-DSA-65.
const SCHEME: SignatureScheme = SignatureScheme::ML_DSA_65;

/// The server name to dial with: the expected machine's id as two 32-hex-digit DNS labels
/// (`<hex 0..16>.<hex 16..32>.x0x.invalid`, each label under 63 characters), or
/// `any.x0x.invalid` when no particular machine is expected.
pub fn server_name(expect: Option<&MachineId>) -> String {
    match expect {
        Some(id) => {
            let hex = id.to_hex();
            let (a, b) = hex.split_at(hex.len() / 2);
            format!("{a}.{b}{SNI_SUFFIX}")
        }
        None => SNI_ANY.to_owned(),
    }
}

/// Parses a name made by [`server_name`]: `Ok(None)` for "any machine", `Err` for a name we
/// never make (refused, so a malformed name can never weaken the check).
fn expected_machine(name: &str) -> Result<Option<MachineId>, ()> {
    if name.eq_ignore_ascii_case(SNI_ANY) {
        return Ok(None);
    }
    let labels = name.strip_suffix(SNI_SUFFIX).ok_or(())?;
    let (a, b) = labels.split_once('.').ok_or(())?;
    MachineId::from_hex(&format!("{a}{b}"))
        .map(Some)
        .map_err(|_| ())
}

/// The machine a finished handshake proved, from the peer's raw public key.
pub fn peer_machine_id(conn: &quinn::Connection) -> Option<MachineId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let key = PublicKey::from_spki_der(certs.first()?.as_ref()).ok()?;
    Some(MachineId::from_public_key(&key))
}

/// The QUIC transport settings both sides use.
pub fn transport_config(net: &NetworkConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // One unidirectional stream each way carries every frame; nothing else is allowed.
    t.max_concurrent_bidi_streams(0u8.into());
    t.max_concurrent_uni_streams(1u8.into());
    // Bounded receive buffering: four maximal frames per stream, eight per connection.
    let frame = x0x_proto::wire::MAX_FRAME_LEN as u32;
    t.stream_receive_window((4 * frame).into());
    t.receive_window((8 * frame).into());
    t.max_idle_timeout(Some(
        net.idle_timeout
            .min(Duration::from_secs(600))
            .try_into()
            .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))),
    ));
    Arc::new(t)
}

/// The key-exchange group every x0x-rs connection uses: hybrid X25519 + ML-KEM-768
/// (draft-ietf-tls-ecdhe-mlkem), so traffic recorded today stays secret against a future
/// quantum computer. The dialler offers nothing else; the server also accepts X25519 so that
/// a classical-only peer finishes the handshake and is then refused with a counted reason
/// ([`CloseCode::ClassicalKeyExchange`](crate::transport::CloseCode::ClassicalKeyExchange))
/// instead of an anonymous handshake failure.
pub const KEY_EXCHANGE: NamedGroup = NamedGroup::X25519MLKEM768;

/// The name of a key-exchange group as TLS registries spell it (`X25519MLKEM768`, `X25519`).
pub fn group_name(group: NamedGroup) -> String {
    format!("{group:?}")
}

/// Makes each connection's TLS configuration, so that each records the key-exchange group
/// its own handshake used ([`KeyExchangeRecord`]).
#[derive(Debug, Clone)]
pub struct ConnectionTls {
    key: Arc<CertifiedKey>,
    transport: Arc<quinn::TransportConfig>,
    max_incoming: usize,
}

impl ConnectionTls {
    /// The configurations of `machine` under `net`'s transport settings.
    pub fn new(machine: &MachineKeypair, net: &NetworkConfig) -> Self {
        Self {
            key: certified_key(machine),
            transport: transport_config(net),
            max_incoming: net.max_incoming_handshakes.max(1),
        }
    }

    /// A server configuration (mutual raw-public-key TLS) for one incoming connection:
    /// [`KEY_EXCHANGE`], or X25519 for a classical-only client so it can be refused by name.
    pub fn server(&self) -> Result<(quinn::ServerConfig, KeyExchangeRecord), TlsError> {
        self.server_offering(&[KEY_EXCHANGE, NamedGroup::X25519], true)
    }

    fn server_offering(
        &self,
        groups: &[NamedGroup],
        recorded: bool,
    ) -> Result<(quinn::ServerConfig, KeyExchangeRecord), TlsError> {
        let (provider, record) = provider(groups, recorded);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyMachineVerifier))
            .with_cert_resolver(Arc::new(MachineKeyResolver(self.key.clone())));
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls)?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        cfg.transport_config(self.transport.clone());
        cfg.max_incoming(self.max_incoming);
        cfg.migration(false);
        Ok((cfg, record))
    }

    /// A client configuration for one dial: offers [`KEY_EXCHANGE`] only, presents the
    /// machine key and checks the server against the id in the SNI.
    pub fn client(&self) -> Result<(quinn::ClientConfig, KeyExchangeRecord), TlsError> {
        self.client_offering(&[KEY_EXCHANGE], true)
    }

    fn client_offering(
        &self,
        groups: &[NamedGroup],
        recorded: bool,
    ) -> Result<(quinn::ClientConfig, KeyExchangeRecord), TlsError> {
        let (provider, record) = provider(groups, recorded);
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExpectedMachineVerifier))
            .with_client_cert_resolver(Arc::new(MachineKeyResolver(self.key.clone())));
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls)?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(self.transport.clone());
        Ok((cfg, record))
    }
}

/// A server configuration without a record (the endpoint's default; each connection the
/// driver accepts gets its own from [`ConnectionTls::server`]): it offers [`KEY_EXCHANGE`]
/// alone, so a classical-only client fails in the handshake.
pub fn server_config(
    machine: &MachineKeypair,
    net: &NetworkConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    Ok(ConnectionTls::new(machine, net)
        .server_offering(&[KEY_EXCHANGE], false)?
        .0)
}

/// A client configuration for dials by hand (tests, tools): offers [`KEY_EXCHANGE`] alone,
/// with no record (a configuration kept beyond one handshake must not hold a lent slot).
pub fn client_config(
    machine: &MachineKeypair,
    net: &NetworkConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    Ok(ConnectionTls::new(machine, net)
        .client_offering(&[KEY_EXCHANGE], false)?
        .0)
}

/// A client that offers only classical X25519, as a peer without post-quantum key exchange
/// would: for tests that such a peer is refused.
#[doc(hidden)]
pub fn classical_client_config(
    machine: &MachineKeypair,
    net: &NetworkConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    Ok(ConnectionTls::new(machine, net)
        .client_offering(&[NamedGroup::X25519], false)?
        .0)
}

/// The key-exchange group one handshake used, written by the TLS stack itself when it
/// completes the exchange (so it is what was negotiated, not what was configured).
///
/// rustls takes key-exchange groups as `&'static` values, so a group cannot carry a
/// per-connection record. Instead each handshake borrows a slot from a process-wide pool
/// (at most 4 096, made on demand and reused, never freed): a set of wrapping groups
/// that write to whichever record holds the slot. The record gives the slot back when its
/// last clone is dropped. With the pool exhausted a handshake offers [`KEY_EXCHANGE`] alone,
/// so the record holds it from the start.
#[derive(Debug, Clone, Default)]
pub struct KeyExchangeRecord {
    cell: Arc<OnceLock<NamedGroup>>,
    slot: Option<Arc<SlotLease>>,
}

impl KeyExchangeRecord {
    /// The group, once the handshake computed its shared secret.
    pub fn group(&self) -> Option<NamedGroup> {
        self.cell.get().copied()
    }
}

/// Most recording slots the process makes: handshakes in flight beyond this run unrecorded.
const MAX_SLOTS: usize = 4096;

/// The groups a slot wraps: every group a configuration here may offer.
const RECORDED_GROUPS: [NamedGroup; 2] = [KEY_EXCHANGE, NamedGroup::X25519];

/// Where a slot's groups write: the record of the handshake holding the slot.
type SlotCell = Mutex<Option<Arc<OnceLock<NamedGroup>>>>;

/// One set of recording groups, lent to one handshake at a time.
#[derive(Debug)]
struct Slot {
    groups: Vec<RecordingGroup>,
    cell: &'static SlotCell,
}

static FREE_SLOTS: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());
static SLOTS_MADE: Mutex<usize> = Mutex::new(0);

/// A slot on loan; returned to the pool on drop.
#[derive(Debug)]
struct SlotLease(&'static Slot);

impl Drop for SlotLease {
    fn drop(&mut self) {
        *lock(self.0.cell) = None;
        lock(&FREE_SLOTS).push(self.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    /// A free slot, or a new one below [`MAX_SLOTS`]; `None` when all are lent.
    fn lease() -> Option<SlotLease> {
        let slot = lock(&FREE_SLOTS).pop().or_else(|| {
            let mut made = lock(&SLOTS_MADE);
            (*made < MAX_SLOTS).then(|| {
                *made += 1;
                let cell: &'static SlotCell = Box::leak(Box::new(Mutex::new(None)));
                let groups = RECORDED_GROUPS
                    .iter()
                    .filter_map(plain_group)
                    .map(|inner| RecordingGroup { inner, cell })
                    .collect();
                let slot: &'static Self = Box::leak(Box::new(Self { groups, cell }));
                slot
            })
        })?;
        Some(SlotLease(slot))
    }
}

/// A group that writes the handshake's record when it completes an exchange.
#[derive(Debug)]
struct RecordingGroup {
    inner: &'static dyn SupportedKxGroup,
    cell: &'static SlotCell,
}

impl RecordingGroup {
    fn cell(&self) -> Option<Arc<OnceLock<NamedGroup>>> {
        lock(self.cell).clone()
    }
}

impl SupportedKxGroup for RecordingGroup {
    // A dialler's exchange keeps the record it started under; a server completes its
    // exchange while it handles the ClientHello, with the accepting task still holding the
    // lease (it holds it until the handshake ends), so a reused slot is never written late.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(RecordingExchange {
            inner: self.inner.start()?,
            cell: self.cell(),
        }))
    }

    fn start_and_complete(
        &self,
        peer_pub_key: &[u8],
    ) -> Result<CompletedKeyExchange, rustls::Error> {
        let done = self.inner.start_and_complete(peer_pub_key)?;
        if let Some(cell) = self.cell() {
            let _ = cell.set(done.group);
        }
        Ok(done)
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        self.inner.ffdhe_group()
    }

    fn name(&self) -> NamedGroup {
        self.inner.name()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }

    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        self.inner.usable_for_version(version)
    }
}

/// A dialler's exchange in progress; records its group when the server's share completes it.
struct RecordingExchange {
    inner: Box<dyn ActiveKeyExchange>,
    cell: Option<Arc<OnceLock<NamedGroup>>>,
}

impl ActiveKeyExchange for RecordingExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let group = self.inner.group();
        let cell = self.cell.clone();
        let secret = self.inner.complete(peer_pub_key)?;
        if let Some(cell) = cell {
            let _ = cell.set(group);
        }
        Ok(secret)
    }

    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        self.inner.hybrid_component()
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<SharedSecret, rustls::Error> {
        let group = self.inner.hybrid_component().map(|(g, _)| g);
        let me = *self;
        let secret = me.inner.complete_hybrid_component(peer_pub_key)?;
        if let (Some(cell), Some(group)) = (me.cell, group) {
            let _ = cell.set(group);
        }
        Ok(secret)
    }

    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }

    fn group(&self) -> NamedGroup {
        self.inner.group()
    }
}

/// aws-lc-rs with only `groups`: recorded (when `recorded` and a slot is free) into a fresh
/// [`KeyExchangeRecord`], whose lease must not outlive the one handshake it is for.
fn provider(groups: &[NamedGroup], recorded: bool) -> (Arc<CryptoProvider>, KeyExchangeRecord) {
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let mut record = KeyExchangeRecord::default();
    if !recorded {
        let kx_groups = groups.iter().filter_map(plain_group).collect();
        return (Arc::new(CryptoProvider { kx_groups, ..base }), record);
    }
    let kx_groups = match Slot::lease() {
        Some(lease) => {
            let slot = lease.0;
            *lock(slot.cell) = Some(record.cell.clone());
            record.slot = Some(Arc::new(lease));
            groups
                .iter()
                .filter_map(|g| {
                    let wrapped = slot.groups.iter().find(|r| r.inner.name() == *g);
                    wrapped
                        .map(|r| r as &'static dyn SupportedKxGroup)
                        .or_else(|| plain_group(g))
                })
                .collect()
        }
        None => {
            // Unrecorded: offer the post-quantum group alone, so a finished handshake used it.
            let _ = record.cell.set(KEY_EXCHANGE);
            plain_group(&KEY_EXCHANGE).into_iter().collect()
        }
    };
    (Arc::new(CryptoProvider { kx_groups, ..base }), record)
}

/// aws-lc-rs's own implementation of `group`.
fn plain_group(group: &NamedGroup) -> Option<&'static dyn SupportedKxGroup> {
    ALL_KX_GROUPS.iter().copied().find(|k| k.name() == *group)
}

fn certified_key(machine: &MachineKeypair) -> Arc<CertifiedKey> {
    let spki = machine.public_key().to_spki_der();
    let signing = MachineSigningKey {
        machine: machine.clone(),
        spki: spki.clone(),
    };
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        Arc::new(signing),
    ))
}

/// The machine key as a rustls signing key (pure ML-DSA-65, empty context).
#[derive(Debug)]
struct MachineSigningKey {
    machine: MachineKeypair,
    spki: Vec<u8>,
}

impl SigningKey for MachineSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SCHEME)
            .then(|| Box::new(MachineSigner(self.machine.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        // ML-DSA has no `SignatureAlgorithm` code point (TLS 1.2 only); 0x09 is unassigned.
        SignatureAlgorithm::Unknown(0x09)
    }
}

#[derive(Debug)]
struct MachineSigner(MachineKeypair);

impl Signer for MachineSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.0.sign_tls13(message))
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

/// Always presents the machine key, as a raw public key, on both sides.
#[derive(Debug)]
struct MachineKeyResolver(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for MachineKeyResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn only_raw_public_keys(&self) -> bool {
        true
    }
}

impl rustls::client::ResolvesClientCert for MachineKeyResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes.contains(&SCHEME).then(|| self.0.clone())
    }

    fn only_raw_public_keys(&self) -> bool {
        true
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Decodes a presented raw public key; a chain (intermediates) is refused.
fn presented_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PublicKey, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ));
    }
    PublicKey::from_spki_der(end_entity.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SCHEME {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
    }
    let key = presented_key(cert, &[])?;
    key.verify_tls13(message, dss.signature())
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))
}

/// The signature checks both verifiers share: TLS 1.3 only, ML-DSA-65 only, over a raw
/// public key.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("x0x-rs speaks TLS 1.3 only".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SCHEME]
        }

        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

/// Client side: checks the server's key against the machine named in the SNI.
#[derive(Debug)]
struct ExpectedMachineVerifier;

impl ServerCertVerifier for ExpectedMachineVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = presented_key(end_entity, intermediates)?;
        let ServerName::DnsName(name) = server_name else {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        };
        match expected_machine(name.as_ref()) {
            Ok(None) => Ok(ServerCertVerified::assertion()),
            Ok(Some(expected)) if MachineId::from_public_key(&key) == expected => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        }
    }

    signature_checks!();
}

/// Server side: requires a client key and accepts any valid ML-DSA-65 one.
#[derive(Debug)]
struct AnyMachineVerifier;

impl ClientCertVerifier for AnyMachineVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        presented_key(end_entity, intermediates).map(|_| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_round_trip() {
        let id = MachineKeypair::from_seed([3; 32]).machine_id();
        let name = server_name(Some(&id));
        assert!(name.split('.').all(|l| l.len() <= 63));
        assert!(ServerName::try_from(name.clone()).is_ok());
        assert_eq!(expected_machine(&name), Ok(Some(id)));
        assert_eq!(expected_machine(&server_name(None)), Ok(None));
        assert!(expected_machine("example.com").is_err());
        assert!(expected_machine("zz.zz.x0x.invalid").is_err());
    }
}
