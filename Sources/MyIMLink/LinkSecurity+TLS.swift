import MyIMTopology
import NIOCore
import NIOSSL

/// How a link is protected: mutual TLS 1.3 with the cluster CA, or nothing (only where the
/// topology says `links: plain`).
public enum LinkProtection: Sendable {
    case plain
    case tls(NIOSSLContext)

    /// The server side of a node's links: its certificate, and client certificates required
    /// and verified against the cluster CA.
    public static func server(for node: String, keys: ClusterKeys, links: LinkSecurity) throws -> LinkProtection {
        guard links == .tls else { return .plain }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(keys.certificatePath(for: node)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: keys.certificateKeyPath(for: node), format: .pem)))
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(keys.caCertificatePath))
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv13
        return .tls(try NIOSSLContext(configuration: configuration))
    }

    /// The client side of a node's links: its certificate, and the server's verified against
    /// the cluster CA and the server's node name.
    public static func client(for node: String, keys: ClusterKeys, links: LinkSecurity) throws -> LinkProtection {
        guard links == .tls else { return .plain }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(keys.certificatePath(for: node)).map { .certificate($0) }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keys.certificateKeyPath(for: node), format: .pem))
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(keys.caCertificatePath))
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv13
        return .tls(try NIOSSLContext(configuration: configuration))
    }
}
