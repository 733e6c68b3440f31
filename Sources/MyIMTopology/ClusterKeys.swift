import Crypto
import CryptoExtras
import Foundation
import MyIMSecureChannel
import X509

/// The key directory `myim keys init` fills, and the way every role reads it.
///
/// Layout: `<node>.identity.pem` (RSA-2048 or Ed25519, PKCS#8), `token-signing.pem`
/// (Ed25519), `ca.pem` + `ca.key.pem` (the cluster CA, P-256) and `<node>.cert.pem` +
/// `<node>.cert.key.pem` (each node's leaf for server-to-server mutual TLS). Every file is
/// mode 0600 and the directory 0700; a private key other users could read is refused.
public struct ClusterKeys: Sendable {
    public let directory: String
    /// The topology file the keys belong to, named in "run `myim keys init`" hints.
    public let topologyFile: String?

    public init(directory: String) {
        self.directory = directory
        self.topologyFile = nil
    }

    /// The key directory of `topology`.
    public init(topology: Topology) {
        self.directory = topology.keysDirectory
        self.topologyFile = topology.file
    }

    // MARK: - Paths

    public func identityKeyPath(for node: String) -> String { path("\(node).identity.pem") }
    public var tokenSigningKeyPath: String { path("token-signing.pem") }
    public var caCertificatePath: String { path("ca.pem") }
    public var caKeyPath: String { path("ca.key.pem") }
    public func certificatePath(for node: String) -> String { path("\(node).cert.pem") }
    public func certificateKeyPath(for node: String) -> String { path("\(node).cert.key.pem") }

    private func path(_ name: String) -> String {
        (directory as NSString).appendingPathComponent(name)
    }

    var initHint: String {
        "run `myim keys init --topology \(topologyFile ?? "topology.yaml")`"
    }

    // MARK: - Reading

    /// The node's long-term identity key, RSA or Ed25519 as the file holds it.
    public func identityKey(for node: String) throws -> ServerIdentityKey {
        let file = identityKeyPath(for: node)
        let pem = try KeyFiles.readPrivate(file, hint: initHint)
        return try Self.parseIdentityKey(pem, file: file)
    }

    /// The public half of the node's identity key; its `fingerprint` is what clients pin.
    public func identityPublicKey(for node: String) throws -> ServerPublicKey {
        try identityKey(for: node).publicKey
    }

    /// The login center's Ed25519 token-signing key (jwt-kit EdDSA).
    public func tokenSigningKey() throws -> Curve25519.Signing.PrivateKey {
        let file = tokenSigningKeyPath
        let pem = try KeyFiles.readPrivate(file, hint: initHint)
        do {
            return try Curve25519.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw KeyError(.malformed, file: file, "is not an Ed25519 private key in PKCS#8 PEM (\(error))")
        }
    }

    /// The key endpoints and clients verify tokens with.
    public func tokenPublicKey() throws -> Curve25519.Signing.PublicKey {
        try tokenSigningKey().publicKey
    }

    /// The cluster CA certificate every server-to-server TLS peer trusts.
    public func caCertificate() throws -> Certificate {
        try Self.readCertificate(caCertificatePath, hint: initHint)
    }

    /// The node's TLS leaf certificate, signed by the cluster CA.
    public func certificate(for node: String) throws -> Certificate {
        try Self.readCertificate(certificatePath(for: node), hint: initHint)
    }

    /// The private key of the node's TLS leaf certificate.
    public func certificatePrivateKey(for node: String) throws -> P256.Signing.PrivateKey {
        try Self.readP256Key(certificateKeyPath(for: node), hint: initHint)
    }

    // MARK: - Parsing

    /// An identity key from PKCS#8 PEM: Ed25519 or RSA (PKCS#1 PEM is accepted too).
    static func parseIdentityKey(_ pem: String, file: String) throws(KeyError) -> ServerIdentityKey {
        if let ed25519 = try? Curve25519.Signing.PrivateKey(pemRepresentation: pem) {
            return ServerIdentityKey(ed25519: ed25519)
        }
        let rsa: _RSA.Signing.PrivateKey
        do {
            rsa = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw KeyError(.malformed, file: file, "is neither an RSA nor an Ed25519 private key in PEM")
        }
        do {
            return try ServerIdentityKey(rsa: rsa)
        } catch {
            throw KeyError(.malformed, file: file, "holds an RSA key that cannot be an identity key: \(error)")
        }
    }

    static func identityKind(_ key: ServerIdentityKey) -> IdentityKeyKind {
        key.publicKey.type == .ed25519 ? .ed25519 : .rsa
    }

    static func readCertificate(_ file: String, hint: String) throws(KeyError) -> Certificate {
        let pem = try KeyFiles.readPublic(file, hint: hint)
        do {
            return try Certificate(pemEncoded: pem)
        } catch {
            throw KeyError(.malformed, file: file, "is not a PEM certificate (\(error))")
        }
    }

    static func readP256Key(_ file: String, hint: String) throws(KeyError) -> P256.Signing.PrivateKey {
        let pem = try KeyFiles.readPrivate(file, hint: hint)
        do {
            return try P256.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw KeyError(.malformed, file: file, "is not a P-256 private key in PEM (\(error))")
        }
    }
}
