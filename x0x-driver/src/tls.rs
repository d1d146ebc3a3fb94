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
//! Key exchange is whatever the `ring` provider offers (X25519); the channel's confidentiality
//! is classical, its authentication post-quantum.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureAlgorithm, SignatureScheme,
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

/// The endpoint's server configuration: mutual raw-public-key TLS with `machine`.
pub fn server_config(
    machine: &MachineKeypair,
    net: &NetworkConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let key = certified_key(machine);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyMachineVerifier))
        .with_cert_resolver(Arc::new(MachineKeyResolver(key)));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport_config(net));
    cfg.max_incoming(net.max_incoming_handshakes.max(1));
    cfg.migration(false);
    Ok(cfg)
}

/// The client configuration for dials: presents `machine`, checks the server against the
/// id in the SNI.
pub fn client_config(
    machine: &MachineKeypair,
    net: &NetworkConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    let key = certified_key(machine);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExpectedMachineVerifier))
        .with_client_cert_resolver(Arc::new(MachineKeyResolver(key)));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport_config(net));
    Ok(cfg)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
