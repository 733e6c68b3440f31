import MyIMSecureChannel
import MyIMWire
import NIOCore

/// The login center's signature over a server list (message 40, and 9's `servers`).
///
/// The signed bytes are the context string `"MyIM-v1 server list"`, one zero byte, then the
/// layer-3 encoding of the list's body *without* its `signature` key (`domain`, `issued`,
/// `servers`, in that order). The signing key is the login center's identity key, the one
/// the client pinned for the handshake, so trust in every endpoint chains from that one pin.
public enum ServerListSignature {
    public static let context: [UInt8] = Array("MyIM-v1 server list".utf8) + [0]

    /// The exact bytes that are signed.
    public static func signedBytes(of list: ServerList) -> [UInt8] {
        var body = list.body
        body["signature"] = nil
        var buffer = ByteBuffer()
        buffer.writeWireDict(body)
        return context + Array(buffer.readableBytesView)
    }

    /// A list of `servers` for `domain`, signed now.
    public static func sign(domain: String, servers: [ServerEntry], issued: Int64, with identity: ServerIdentityKey) throws -> ServerList {
        var list = ServerList(domain: domain, issued: issued, servers: servers, signature: [])
        list.signature = try identity.signature(for: signedBytes(of: list))
        return list
    }

    /// Whether `list` was signed by the holder of `key`.
    public static func isValid(_ list: ServerList, signedBy key: ServerPublicKey) -> Bool {
        key.isValidSignature(list.signature, for: signedBytes(of: list))
    }
}
