import Foundation
import MyIMLink
import MyIMSecureChannel
import MyIMTopology
import MyIMWire

extension LoginCenterConfiguration {
    /// The login center described by `topology`, with its keys from `keys`.
    ///
    /// Its database is `<data>/<login center name>/login.sqlite`; the server list of each
    /// domain carries every endpoint's advertised address, priority and identity-key
    /// fingerprint; tokens are issued as `myim:<cluster>`. The directory listens at
    /// `loginCenter.directory` for each domain's center.
    public init(topology: Topology, keys: ClusterKeys) throws {
        let node = topology.loginCenter
        var servers: [String: [ServerEntry]] = [:]
        for domain in topology.domains {
            servers[domain.name] = try domain.endpoints.map { endpoint in
                ServerEntry(
                    name: endpoint.name, host: endpoint.advertise.host, port: Int64(endpoint.advertise.port),
                    priority: Int64(endpoint.priority), fingerprint: try keys.identityPublicKey(for: endpoint.name).fingerprint.description)
            }
        }
        self.init(
            host: node.listen.host, port: node.listen.port, identity: try keys.identityKey(for: node.name), servers: servers,
            defaultDomain: topology.domains[0].name,
            databasePath: (topology.dataDirectory as NSString).appendingPathComponent("\(node.name)/login.sqlite"),
            tokenSigningKey: try keys.tokenSigningKey(), issuer: Self.issuer(cluster: topology.cluster))
        tokenLifetime = TimeInterval(node.tokenLifetimeSeconds)
        name = node.name
        directory = DirectoryListenConfiguration(
            host: node.directory.host, port: node.directory.port,
            protection: try LinkProtection.server(for: node.name, keys: keys, links: topology.links),
            centers: Dictionary(uniqueKeysWithValues: topology.domains.map { ($0.name, $0.center.name) }))
    }

    /// The token issuer of a cluster: what endpoints expect in `iss`.
    public static func issuer(cluster: String) -> String { "myim:\(cluster)" }
}
