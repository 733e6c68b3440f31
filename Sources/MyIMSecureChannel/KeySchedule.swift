import Crypto

/// The keys of one direction: an AES-256-GCM key and the 4-byte salt that starts every IV.
public struct TrafficKeys: Sendable {
    public let key: SymmetricKey
    public let salt: [UInt8]

    public init(key: SymmetricKey, salt: [UInt8]) {
        precondition(salt.count == FrameProtection.saltSize)
        self.key = key
        self.salt = salt
    }
}

/// Everything derived from one handshake.
///
/// Each output is `HKDF-SHA256(ikm: shared secret, salt: transcript hash, info: label, L)`
/// with the labels of ``HandshakeConstants/Label``.
public struct KeySchedule: Sendable {
    public let transcriptHash: [UInt8]
    public let clientToServer: TrafficKeys
    public let serverToClient: TrafficKeys
    let clientFinishedKey: SymmetricKey
    let serverFinishedKey: SymmetricKey

    /// Derives the schedule; `sharedSecret` is the 32-byte X25519 output.
    public init(sharedSecret: [UInt8], transcriptHash: [UInt8]) {
        // HKDF's extract step is the same for every label: done once. Every output is at most
        // one SHA-256 block (32 bytes), so each expand is T(1) = HMAC(PRK, info || 0x01) cut to
        // its length: one HMAC keyed with the PRK once, copied for each label.
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: sharedSecret), salt: transcriptHash)
        let keyed = HMAC<SHA256>(key: SymmetricKey(data: prk))
        func derive(_ label: String, _ count: Int) -> SymmetricKey {
            precondition(count <= SHA256.byteCount)
            var mac = keyed
            mac.update(data: Array(label.utf8) + [1])
            return SymmetricKey(data: mac.finalize().withUnsafeBytes { Array($0.prefix(count)) })
        }
        typealias Label = HandshakeConstants.Label
        self.transcriptHash = transcriptHash
        clientToServer = TrafficKeys(key: derive(Label.clientToServerKey, 32), salt: derive(Label.clientToServerSalt, 4).bytes)
        serverToClient = TrafficKeys(key: derive(Label.serverToClientKey, 32), salt: derive(Label.serverToClientSalt, 4).bytes)
        clientFinishedKey = derive(Label.clientFinished, 32)
        serverFinishedKey = derive(Label.serverFinished, 32)
    }

    /// ClientFinished's `verify`: HMAC-SHA256(client finished key, transcript hash).
    public var clientVerifyData: [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: transcriptHash, using: clientFinishedKey))
    }

    /// HelloDone's `verify`: HMAC-SHA256(server finished key, transcript hash).
    public var serverVerifyData: [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: transcriptHash, using: serverFinishedKey))
    }

    func isValidClientVerify(_ verify: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(verify, authenticating: transcriptHash, using: clientFinishedKey)
    }

    func isValidServerVerify(_ verify: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(verify, authenticating: transcriptHash, using: serverFinishedKey)
    }
}

extension SymmetricKey {
    /// The key's bytes (for salts and test vectors).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
