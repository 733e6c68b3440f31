import Foundation
import MyIMLink
import MyIMPresence
import MyIMTopology

/// What a center needs to run; ``init(topology:node:keys:presence:)`` builds it from
/// `topology.yaml`.
public struct CenterConfiguration: Sendable {
    public var node: String
    public var domain: String
    public var host: String
    public var port: Int
    public var protection: LinkProtection
    public var databasePath: String
    /// The endpoints allowed to link: the domain's endpoints in the topology.
    public var endpoints: Set<String>
    public var presence: any PresenceStore
    /// Who has an account: the login center's directory.
    public var directory: any UserDirectory
    /// Presence entries expire this long after the last heartbeat of their endpoint.
    public var presenceTTL: Int = 30
    /// Largest image, in bytes; larger ones are refused with 333.
    public var maxImageBytes: Int = 4 * 1024 * 1024
    /// Longest text, in bytes of UTF-8.
    public var maxTextBytes: Int = 64 * 1024
    /// Unread messages carried in message 10 itself; the rest follow as 18.
    public var initialBatch: Int = 200
    /// Most members a group can have (the creator included); more is refused with 336.
    public var maxGroupMembers: Int = 2000
    /// Longest group name, in bytes of UTF-8; longer is refused with 337.
    public var maxGroupNameBytes: Int = 64
    /// A group message not yet received by every member is deleted after this long (ms).
    public var groupMessageRetention: Int64 = 7 * 24 * 3_600_000
    /// How often group messages every member has, or past their retention, are deleted.
    public var groupSweepInterval: Duration = .seconds(300)
    /// Groups whose members are kept in memory; past this the cache starts again.
    public var groupCacheLimit: Int = 100_000
    /// How long a client message id is remembered against retried sends (ms).
    public var dedupRetention: Int64 = 7 * 24 * 3_600_000
    /// Milliseconds since 1970; injectable so that tests can move time.
    public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    public init(
        node: String, domain: String, host: String, port: Int, protection: LinkProtection, databasePath: String,
        endpoints: Set<String>, presence: any PresenceStore, directory: any UserDirectory
    ) {
        self.node = node
        self.domain = domain
        self.host = host
        self.port = port
        self.protection = protection
        self.databasePath = databasePath
        self.endpoints = endpoints
        self.presence = presence
        self.directory = directory
    }

    /// The center of the domain whose center is `node`. Its database is
    /// `<data>/<node>/center.sqlite`; its directory is a ``DirectoryLink`` to the login
    /// center's `directory` address unless `directory` is given.
    public init(topology: Topology, node: String, keys: ClusterKeys, presence: any PresenceStore, directory: (any UserDirectory)? = nil) throws {
        guard let domain = topology.domains.first(where: { $0.center.name == node }) else {
            let centers = topology.domains.map(\.center.name).joined(separator: ", ")
            throw TopologyError(file: topology.file, key: "domains[].center.name", message: "no center is named '\(node)'; centers: \(centers)")
        }
        self.init(
            node: node, domain: domain.name, host: domain.center.listen.host, port: domain.center.listen.port,
            protection: try LinkProtection.server(for: node, keys: keys, links: topology.links),
            databasePath: (topology.dataDirectory as NSString).appendingPathComponent("\(node)/center.sqlite"),
            endpoints: Set(domain.endpoints.map(\.name)), presence: presence,
            directory: try directory ?? DirectoryLink(settings: DirectoryLink.Settings(topology: topology, node: node, keys: keys)))
        presenceTTL = topology.presence.ttlSeconds
    }
}
