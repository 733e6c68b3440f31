import Foundation

/// The checks that span keys: name rules, uniqueness, ranges, address clashes.
struct TopologyValidator {
    let topology: Topology
    let loader: TopologyLoader

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    func validate() throws(TopologyError) {
        try checkName(topology.cluster, at: "cluster")
        try checkRedis()
        guard Self.logLevels.contains(topology.logLevel) else {
            throw loader.error("logLevel", "\"\(topology.logLevel)\" is not a log level; use one of \(Self.logLevels.joined(separator: ", "))")
        }

        let presence = topology.presence
        guard (3...3600).contains(presence.ttlSeconds) else {
            throw loader.error("presence.ttlSeconds", "\(presence.ttlSeconds) is out of range; presence lives 3–3600 seconds after a heartbeat")
        }
        guard presence.heartbeatSeconds >= 1, presence.heartbeatSeconds * 3 <= presence.ttlSeconds else {
            throw loader.error(
                "presence.heartbeatSeconds",
                "\(presence.heartbeatSeconds) must be at least 1 and at most a third of ttlSeconds (\(presence.ttlSeconds)), so that one lost heartbeat takes nobody offline")
        }

        var names: [String: String] = [:]
        var listens: [(address: HostPort, key: String)] = []

        func claim(name: String, at key: String) throws(TopologyError) {
            try checkName(name, at: key)
            if let first = names[name] {
                throw loader.error(key, "node name \"\(name)\" is already used by \(first); node names must be unique")
            }
            names[name] = key
        }
        func claim(address: HostPort, at key: String) throws(TopologyError) {
            if let clash = listens.first(where: { Self.clash($0.address, address) }) {
                throw loader.error(key, "\(address) is already taken by \(clash.key) (\(clash.address)); no two listeners may share a host:port")
            }
            listens.append((address, key))
        }

        let login = topology.loginCenter
        try claim(name: login.name, at: "loginCenter.name")
        try claim(address: login.listen, at: "loginCenter.listen")
        try claim(address: login.directory, at: "loginCenter.directory")
        try checkAdvertise(login.advertise, listen: login.listen, at: "loginCenter.advertise")
        if let metrics = login.metrics { try claim(address: metrics, at: "loginCenter.metrics") }
        guard LoginCenterNode.tokenLifetimeRange.contains(login.tokenLifetimeSeconds) else {
            throw loader.error(
                "loginCenter.tokenLifetimeSeconds",
                "\(login.tokenLifetimeSeconds) is out of range; tokens live 60–86400 seconds (at most 24 h)"
            )
        }

        var domainNames: [String: Int] = [:]
        for (d, domain) in topology.domains.enumerated() {
            let path = "domains[\(d)]"
            try checkDomainName(domain.name, at: "\(path).name")
            if let first = domainNames[domain.name] {
                throw loader.error("\(path).name", "domain \"\(domain.name)\" is already described by domains[\(first)]")
            }
            domainNames[domain.name] = d

            try claim(name: domain.center.name, at: "\(path).center.name")
            try claim(address: domain.center.listen, at: "\(path).center.listen")
            if let metrics = domain.center.metrics { try claim(address: metrics, at: "\(path).center.metrics") }

            for (e, endpoint) in domain.endpoints.enumerated() {
                let epath = "\(path).endpoints[\(e)]"
                try claim(name: endpoint.name, at: "\(epath).name")
                try claim(address: endpoint.listen, at: "\(epath).listen")
                try checkAdvertise(endpoint.advertise, listen: endpoint.listen, at: "\(epath).advertise")
                if let metrics = endpoint.metrics { try claim(address: metrics, at: "\(epath).metrics") }
                guard EndpointNode.priorityRange.contains(endpoint.priority) else {
                    throw loader.error("\(epath).priority", "\(endpoint.priority) is out of range; priorities are 0–1000, lower tried first")
                }
            }
        }
    }

    /// Node and cluster names: 1–63 of `[a-z0-9-]`, starting and ending with a letter or digit
    /// (they become file names and certificate names).
    private func checkName(_ name: String, at key: String) throws(TopologyError) {
        guard (1...63).contains(name.utf8.count) else {
            throw loader.error(key, "\"\(name)\" must be 1–63 characters long")
        }
        guard name.utf8.allSatisfy(Self.isNameByte) else {
            throw loader.error(key, "\"\(name)\" may contain only lower-case letters, digits and `-`")
        }
        guard name.first != "-", name.last != "-" else {
            throw loader.error(key, "\"\(name)\" must start and end with a letter or a digit")
        }
    }

    /// Domain names are lower-case DNS names: dot-separated labels that follow the node-name rule.
    private func checkDomainName(_ name: String, at key: String) throws(TopologyError) {
        guard (1...253).contains(name.utf8.count) else {
            throw loader.error(key, "\"\(name)\" must be 1–253 characters long")
        }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard (1...63).contains(label.utf8.count), label.utf8.allSatisfy(Self.isNameByte),
                  label.first != "-", label.last != "-"
            else {
                throw loader.error(
                    key,
                    "\"\(name)\" is not a lower-case DNS name (labels of 1–63 letters, digits and inner `-`, joined by dots)"
                )
            }
        }
    }

    private func checkAdvertise(_ advertise: HostPort, listen: HostPort, at key: String) throws(TopologyError) {
        guard advertise.isUnspecified else { return }
        let message = advertise == listen
            ? "defaults to the listen address \(listen), which means every interface and cannot be dialled; set `advertise`"
            : "\(advertise) means every interface and cannot be dialled; give a reachable address"
        throw loader.error(key, message)
    }

    private func checkRedis() throws(TopologyError) {
        guard let url = URL(string: topology.redis), let scheme = url.scheme, ["redis", "rediss", "unix"].contains(scheme) else {
            throw loader.error("redis", "\"\(topology.redis)\" is not a Redis URL such as redis://127.0.0.1:6379/0")
        }
        if scheme != "unix", url.host == nil || url.host == "" {
            throw loader.error("redis", "\"\(topology.redis)\" has no host; write it as redis://HOST:PORT/DB")
        }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: "-")
    }

    /// Two listeners clash on the same port when their hosts are equal or either is a wildcard.
    static func clash(_ a: HostPort, _ b: HostPort) -> Bool {
        a.port == b.port && (a.host.lowercased() == b.host.lowercased() || a.isUnspecified || b.isUnspecified)
    }
}
