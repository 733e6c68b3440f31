import Crypto
import CryptoExtras
import Foundation
import MyIMWire

/// The kinds of long-term server identity key, named as they appear in ServerHello's `key_type`.
public enum IdentityKeyType: String, Sendable, Hashable {
    /// RSA (at least 2048 bits), RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    case rsaPSS = "rsa-pss-sha256"
    /// Ed25519 (RFC 8032), for endpoints that must absorb reconnect storms.
    case ed25519 = "ed25519"
}

/// A server's long-term identity: signs each handshake transcript.
public struct ServerIdentityKey: Sendable {
    private enum Backing: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }

    private let backing: Backing
    public let publicKey: ServerPublicKey

    public init(rsa key: _RSA.Signing.PrivateKey) throws {
        backing = .rsa(key)
        publicKey = try ServerPublicKey(type: .rsaPSS, spki: Array(key.publicKey.derRepresentation))
    }

    public init(ed25519 key: Curve25519.Signing.PrivateKey) {
        backing = .ed25519(key)
        publicKey = ServerPublicKey(ed25519: key.publicKey)
    }

    /// A fresh RSA-2048 key (tens of milliseconds).
    public static func generateRSA() throws -> ServerIdentityKey {
        try ServerIdentityKey(rsa: _RSA.Signing.PrivateKey(keySize: .bits2048))
    }

    /// A fresh Ed25519 key.
    public static func generateEd25519() -> ServerIdentityKey {
        ServerIdentityKey(ed25519: Curve25519.Signing.PrivateKey())
    }

    /// Signs `message` with the identity key (RSA-PSS-SHA256 or Ed25519).
    public func signature(for message: [UInt8]) throws -> [UInt8] {
        switch backing {
        case .rsa(let key):
            Array(try key.signature(for: message, padding: .PSS).rawRepresentation)
        case .ed25519(let key):
            Array(try key.signature(for: message))
        }
    }
}

/// A server's public identity key as it travels in ServerHello: its type and DER SPKI.
public struct ServerPublicKey: Hashable, Sendable {
    public let type: IdentityKeyType
    /// DER SubjectPublicKeyInfo.
    public let spki: [UInt8]
    public let fingerprint: KeyFingerprint

    /// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows.
    static let ed25519SPKIPrefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// Parses and checks a key received from a peer.
    public init(type: IdentityKeyType, spki: [UInt8]) throws(SecureChannelError) {
        switch type {
        case .rsaPSS:
            let key: _RSA.Signing.PublicKey
            do { key = try _RSA.Signing.PublicKey(derRepresentation: spki) } catch {
                throw SecureChannelError(.badSignature, "the server's RSA identity key is not a valid DER SubjectPublicKeyInfo")
            }
            guard key.keySizeInBits >= 2048 else {
                throw SecureChannelError(.badSignature, "the server's RSA identity key has \(key.keySizeInBits) bits; at least 2048 are required")
            }
        case .ed25519:
            guard spki.count == Self.ed25519SPKIPrefix.count + 32, spki.starts(with: Self.ed25519SPKIPrefix) else {
                throw SecureChannelError(.badSignature, "the server's Ed25519 identity key is not a 44-byte SubjectPublicKeyInfo")
            }
        }
        self.type = type
        self.spki = spki
        self.fingerprint = KeyFingerprint(publicKeyDER: spki)
    }

    init(ed25519 key: Curve25519.Signing.PublicKey) {
        type = .ed25519
        spki = Self.ed25519SPKIPrefix + Array(key.rawRepresentation)
        fingerprint = KeyFingerprint(publicKeyDER: spki)
    }

    /// Whether `signature` is this key's signature over `message`.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        switch type {
        case .rsaPSS:
            guard let key = try? _RSA.Signing.PublicKey(derRepresentation: spki) else { return false }
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: message, padding: .PSS)
        case .ed25519:
            guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: spki.dropFirst(Self.ed25519SPKIPrefix.count)) else {
                return false
            }
            return key.isValidSignature(signature, for: message)
        }
    }
}
