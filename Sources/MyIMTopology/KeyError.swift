/// A key file that is missing, unreadable, malformed or unsafe: which file, what is wrong,
/// and what to do about it.
public struct KeyError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file does not exist: the keys were never initialized, or for another topology.
        case missing
        /// The file exists but cannot be read, or the directory cannot be written.
        case io
        /// The file does not hold what its name says (bad PEM, wrong algorithm).
        case malformed
        /// The key exists but is of another kind than the topology asks for.
        case wrongKind
        /// A private key file other users could read, or a directory they could enter.
        case permissions
        /// A certificate that does not belong to the cluster CA or to its key.
        case certificate
    }

    public var code: Code
    /// The file (or directory) concerned.
    public var file: String
    public var message: String

    public init(_ code: Code, file: String, _ message: String) {
        self.code = code
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// One key or certificate that `ClusterKeys.initialize` created or kept.
public struct KeyReport: Sendable {
    /// The node name, `token-signing` or `ca`.
    public var name: String
    /// What it is, e.g. `identity rsa-2048`, `identity ed25519`, `token-signing ed25519`,
    /// `ca p-256`, `tls-cert p-256`.
    public var kind: String
    /// The private key file, or the certificate file for `ca` and `tls-cert`.
    public var path: String
    /// `sha256:` and the hex SHA-256 of the public key's DER SubjectPublicKeyInfo.
    public var fingerprint: String
    /// True when this run wrote it; false when an existing file was kept.
    public var created: Bool

    public init(name: String, kind: String, path: String, fingerprint: String, created: Bool) {
        self.name = name
        self.kind = kind
        self.path = path
        self.fingerprint = fingerprint
        self.created = created
    }
}
