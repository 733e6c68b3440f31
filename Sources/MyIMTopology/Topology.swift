import Foundation

/// How server-to-server links are protected.
public enum LinkSecurity: String, Sendable, CaseIterable {
    /// Mutual TLS with certificates from the cluster CA (`myim keys init`).
    case tls
    /// Plain TCP: only for a cluster on one trusted host or network.
    case plain
}

/// The kind of a server's long-term identity key.
public enum IdentityKeyKind: String, Sendable, CaseIterable {
    /// RSA-2048, RSASSA-PSS: the default for the login center and centers.
    case rsa
    /// Ed25519: the default for endpoints, whose handshakes must absorb reconnect storms.
    case ed25519
}

/// A cluster as `topology.yaml` describes it: the login center, the domains with their
/// centers and endpoints, Redis, link security and where data and keys live.
public struct Topology: Sendable, Equatable {
    public static let defaultRedis = "redis://127.0.0.1:6379/0"

    /// The cluster's name (1–63 characters, `[a-z0-9-]`).
    public var cluster: String
    /// The Redis URL, default `redis://127.0.0.1:6379/0`.
    public var redis: String
    /// Server-to-server link security, default `.tls`.
    public var links: LinkSecurity
    /// Where the servers keep their SQLite files; absolute after loading.
    public var dataDirectory: String
    /// Where `myim keys init` writes keys and certificates; absolute after loading.
    public var keysDirectory: String
    /// swift-log level name, default `info`.
    public var logLevel: String
    /// How presence expires: entries live `ttlSeconds` after the last heartbeat of their
    /// endpoint, which beats every `heartbeatSeconds`.
    public var presence: PresenceTiming
    public var loginCenter: LoginCenterNode
    public var domains: [Domain]
    /// The file this topology was read from (the `file` given to `parse`), for messages.
    public var file: String

    /// Builds a topology in code (tests, generated clusters). `load` and `parse` validate;
    /// this does not.
    public init(
        cluster: String,
        redis: String = Topology.defaultRedis,
        links: LinkSecurity = .tls,
        dataDirectory: String,
        keysDirectory: String,
        logLevel: String = "info",
        presence: PresenceTiming = PresenceTiming(),
        loginCenter: LoginCenterNode,
        domains: [Domain],
        file: String = "(in memory)"
    ) {
        self.cluster = cluster
        self.redis = redis
        self.links = links
        self.dataDirectory = dataDirectory
        self.keysDirectory = keysDirectory
        self.logLevel = logLevel
        self.presence = presence
        self.loginCenter = loginCenter
        self.domains = domains
        self.file = file
    }

    /// The domain called `name`, if the topology has one.
    public func domain(named name: String) -> Domain? {
        domains.first { $0.name == name }
    }

    /// Every server node: the login center, then each domain's center and its endpoints.
    public var allNodes: [NodeDescriptor] {
        var nodes = [NodeDescriptor(name: loginCenter.name, role: .loginCenter, identity: loginCenter.identity, domain: nil)]
        for domain in domains {
            nodes.append(NodeDescriptor(name: domain.center.name, role: .center, identity: domain.center.identity, domain: domain.name))
            for endpoint in domain.endpoints {
                nodes.append(NodeDescriptor(name: endpoint.name, role: .endpoint, identity: endpoint.identity, domain: domain.name))
            }
        }
        return nodes
    }

    /// The address a node listens on for its clients or peers, by node name.
    public func listenAddress(of node: String) -> HostPort? {
        if loginCenter.name == node { return loginCenter.listen }
        for domain in domains {
            if domain.center.name == node { return domain.center.listen }
            if let endpoint = domain.endpoints.first(where: { $0.name == node }) { return endpoint.listen }
        }
        return nil
    }
}

/// Presence expiry: a killed endpoint's users go offline at most `ttlSeconds` after its
/// last heartbeat.
public struct PresenceTiming: Sendable, Equatable {
    /// 3 to 3600 s; default 30.
    public var ttlSeconds: Int
    /// At least 1 s and at most a third of the TTL, so that one lost heartbeat takes nobody
    /// offline; default 10.
    public var heartbeatSeconds: Int

    public init(ttlSeconds: Int = 30, heartbeatSeconds: Int = 10) {
        self.ttlSeconds = ttlSeconds
        self.heartbeatSeconds = heartbeatSeconds
    }
}

/// The login center: accounts, tokens, the signed server lists.
public struct LoginCenterNode: Sendable, Equatable {
    public static let defaultListen = HostPort(host: "127.0.0.1", port: 7000)
    public static let defaultTokenLifetimeSeconds = 86_400
    /// Tokens live at most a day (the seed's daily key renewal) and at least a minute.
    public static let tokenLifetimeRange = 60...86_400

    public var name: String
    /// Default `127.0.0.1:7000`.
    public var listen: HostPort
    /// What clients dial; default `listen`.
    public var advertise: HostPort
    /// Where centers link to look up accounts and hear about logins; default the listen
    /// host, port + 1 (`127.0.0.1:7001`).
    public var directory: HostPort
    /// Default `.rsa`.
    public var identity: IdentityKeyKind
    /// Default 86,400 (24 h); always within 60...86,400.
    public var tokenLifetimeSeconds: Int
    /// Where Prometheus metrics are served, if anywhere.
    public var metrics: HostPort?

    public init(
        name: String,
        listen: HostPort = LoginCenterNode.defaultListen,
        advertise: HostPort? = nil,
        directory: HostPort? = nil,
        identity: IdentityKeyKind = .rsa,
        tokenLifetimeSeconds: Int = LoginCenterNode.defaultTokenLifetimeSeconds,
        metrics: HostPort? = nil
    ) {
        self.name = name
        self.listen = listen
        self.advertise = advertise ?? listen
        self.directory = directory ?? HostPort(host: listen.host, port: listen.port < 65535 ? listen.port + 1 : listen.port - 1)
        self.identity = identity
        self.tokenLifetimeSeconds = tokenLifetimeSeconds
        self.metrics = metrics
    }
}

/// A domain (`alpha.example`): one center and the endpoints its users connect to.
public struct Domain: Sendable, Equatable {
    public var name: String
    public var center: CenterNode
    /// At least one; clients try lower `priority` first.
    public var endpoints: [EndpointNode]

    public init(name: String, center: CenterNode, endpoints: [EndpointNode]) {
        self.name = name
        self.center = center
        self.endpoints = endpoints
    }
}

/// A domain's center: friendships, groups, offline messages, routing.
public struct CenterNode: Sendable, Equatable {
    public var name: String
    /// Where its endpoints and other centers connect.
    public var listen: HostPort
    /// Default `.rsa`.
    public var identity: IdentityKeyKind
    public var metrics: HostPort?

    public init(name: String, listen: HostPort, identity: IdentityKeyKind = .rsa, metrics: HostPort? = nil) {
        self.name = name
        self.listen = listen
        self.identity = identity
        self.metrics = metrics
    }
}

/// An endpoint: holds client connections for its domain.
public struct EndpointNode: Sendable, Equatable {
    public static let priorityRange = 0...1000
    public static let defaultPriority = 100

    public var name: String
    public var listen: HostPort
    /// What goes into the server list clients receive; default `listen`.
    public var advertise: HostPort
    /// 0–1000; lower is tried first (as in DNS SRV).
    public var priority: Int
    /// Default `.ed25519`.
    public var identity: IdentityKeyKind
    public var metrics: HostPort?

    public init(
        name: String,
        listen: HostPort,
        advertise: HostPort? = nil,
        priority: Int = EndpointNode.defaultPriority,
        identity: IdentityKeyKind = .ed25519,
        metrics: HostPort? = nil
    ) {
        self.name = name
        self.listen = listen
        self.advertise = advertise ?? listen
        self.priority = priority
        self.identity = identity
        self.metrics = metrics
    }
}

/// One server node of the topology, whatever its role.
public struct NodeDescriptor: Sendable, Equatable {
    public enum Role: String, Sendable {
        case loginCenter = "login-center"
        case center
        case endpoint
    }

    public var name: String
    public var role: Role
    public var identity: IdentityKeyKind
    /// The node's domain; nil for the login center.
    public var domain: String?

    public init(name: String, role: Role, identity: IdentityKeyKind, domain: String?) {
        self.name = name
        self.role = role
        self.identity = identity
        self.domain = domain
    }
}

/// A wrong or incomplete topology: which file, which key, what is wrong.
public struct TopologyError: Error, Sendable, CustomStringConvertible {
    public var file: String
    /// A key path such as `domains[0].endpoints[1].listen`; `(file)` or `(yaml)` when no key applies.
    public var key: String
    public var message: String

    public init(file: String, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String { "\(file): \(key): \(message)" }
}
