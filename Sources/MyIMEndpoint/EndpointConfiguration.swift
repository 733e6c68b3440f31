import Crypto
import Foundation
import MyIMLink
import MyIMPresence
import MyIMSecureChannel
import MyIMTopology
import MyIMWire
import NIOCore

/// What an endpoint needs to run; ``init(topology:node:keys:presence:)`` builds it from
/// `topology.yaml`, tests build it field by field.
public struct EndpointConfiguration: Sendable {
    /// The endpoint's node name (session ids are `<node>:<counter>`).
    public var node: String
    /// The domain whose users it serves.
    public var domain: String
    /// Where clients connect; port 0 picks a free one.
    public var host: String
    public var port: Int
    /// The identity key that signs handshakes (Ed25519 by default for endpoints).
    public var identity: ServerIdentityKey
    /// The login center's token key: tokens are verified offline with it.
    public var tokenPublicKey: Curve25519.Signing.PublicKey
    /// The expected `iss` of tokens, `myim:<cluster>`.
    public var issuer: String
    /// The domain's center, which this endpoint links to.
    public var centerHost: String
    public var centerPort: Int
    /// The center's node name (its TLS certificate carries it).
    public var centerName: String
    public var linkProtection: LinkProtection
    /// Where heartbeats go.
    public var presence: any PresenceStore

    /// The domain's other endpoints, by priority: the first is named in 48 at shutdown.
    public var peers: [String] = []
    /// How long a graceful shutdown waits for clients to take their last messages and leave.
    public var drainTimeout: Duration = .seconds(10)
    /// How often held users' presence TTLs are refreshed.
    public var heartbeatInterval: Duration = .seconds(10)
    /// Users refreshed by one heartbeat call (about: slices are by hash); a round of calls is
    /// spread over the interval. Redis runs each call's script alone, about 3 µs a user: a slice
    /// of 1,000 held it (and a CPU it shares) for 2.8 ms, one of 100 holds it for 0.4 ms.
    public var heartbeatSlice = 100
    /// The TTL each heartbeat sets, in seconds; a killed endpoint's users go offline after it.
    public var presenceTTL = 30
    /// Connections admitted from one source IP at a time; more are told 331 and closed.
    public var maxConnectionsPerSource = 64
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// No byte from a client for this long closes its connection (half-open sockets included);
    /// clients ping (21) more often than this.
    public var idleTimeout: TimeAmount = .seconds(90)
    /// How long a new session waits for the center's `SessionReady`, the link's reconnection
    /// included; then the client gets 20 with 330 and is closed.
    public var sessionReadyTimeout: Duration = .seconds(10)
    /// Link keepalive: a `LinkPing` this often; three intervals without a byte from the
    /// center drop the link (and the link reconnects).
    public var linkPingInterval: Duration = .seconds(10)
    /// How long to wait for the center's `LinkWelcome` after connecting.
    public var linkWelcomeTimeout: Duration = .seconds(10)
    /// Reconnect delays: from `first`, doubling, capped at `maximum`, with jitter.
    public var reconnectFirstDelay: Duration = .milliseconds(100)
    public var reconnectMaximumDelay: Duration = .seconds(5)
    /// Bytes written to one client and not yet taken by its socket before it is considered
    /// too slow and closed: two of the largest frames (``WireLimits/maxFrameSize``), eight of
    /// the largest images, so that a client reading normally is never closed by a burst.
    public var maxUnreadBytes = 32 << 20
    public var limits: WireLimits = .default
    /// Milliseconds since 1970 (token checks, `server_time`, session `since`); injectable.
    public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    public init(
        node: String, domain: String, host: String, port: Int, identity: ServerIdentityKey,
        tokenPublicKey: Curve25519.Signing.PublicKey, issuer: String,
        centerHost: String, centerPort: Int, centerName: String, linkProtection: LinkProtection,
        presence: any PresenceStore
    ) {
        self.node = node
        self.domain = domain
        self.host = host
        self.port = port
        self.identity = identity
        self.tokenPublicKey = tokenPublicKey
        self.issuer = issuer
        self.centerHost = centerHost
        self.centerPort = centerPort
        self.centerName = centerName
        self.linkProtection = linkProtection
        self.presence = presence
    }

    /// The endpoint `node` of `topology`, with its keys from `keys`.
    ///
    /// It listens on the node's `listen` address, links to its domain's center (at
    /// 127.0.0.1 when the center listens on an unspecified address), protects the link as the
    /// topology's `links` says, and expects tokens issued as `myim:<cluster>`.
    public init(topology: Topology, node: String, keys: ClusterKeys, presence: any PresenceStore) throws {
        guard let domain = topology.domains.first(where: { $0.endpoints.contains { $0.name == node } }),
              let endpoint = domain.endpoints.first(where: { $0.name == node })
        else {
            let known = topology.domains.flatMap { $0.endpoints.map(\.name) }
            throw TopologyError(
                file: topology.file, key: "domains",
                message: "no endpoint is named '\(node)'; the endpoints are \(known.joined(separator: ", "))")
        }
        let center = domain.center.listen
        self.init(
            node: node, domain: domain.name, host: endpoint.listen.host, port: endpoint.listen.port,
            identity: try keys.identityKey(for: node), tokenPublicKey: try keys.tokenPublicKey(),
            issuer: "myim:\(topology.cluster)",
            centerHost: center.isUnspecified ? "127.0.0.1" : center.host, centerPort: center.port,
            centerName: domain.center.name,
            linkProtection: try LinkProtection.client(for: node, keys: keys, links: topology.links),
            presence: presence)
        presenceTTL = topology.presence.ttlSeconds
        heartbeatInterval = .seconds(topology.presence.heartbeatSeconds)
        peers = domain.endpoints.filter { $0.name != node }.sorted { ($0.priority, $0.name) < ($1.priority, $1.name) }.map(\.name)
    }
}
