import Foundation
import Yams

extension Topology {
    /// Reads and validates a topology file. Relative paths inside it are resolved against the
    /// file's directory.
    public static func load(path: String) throws(TopologyError) -> Topology {
        let absolute = absolutePath(path, base: FileManager.default.currentDirectoryPath)
        let text: String
        do {
            text = try String(contentsOfFile: absolute, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: absolute)
                ? "cannot be read as UTF-8 text"
                : "does not exist (pass --topology PATH, or start from the repository's topology.yaml)"
            throw TopologyError(file: path, key: "(file)", message: reason)
        }
        let base = (absolute as NSString).deletingLastPathComponent
        return try parse(yaml: text, baseDirectory: base, file: path)
    }

    /// Parses and validates topology YAML. `baseDirectory` resolves relative paths; `file`
    /// names the source in errors.
    public static func parse(yaml: String, baseDirectory: String, file: String) throws(TopologyError) -> Topology {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw TopologyError(file: file, key: "(yaml)", message: describe(error, in: yaml))
        } catch {
            throw TopologyError(file: file, key: "(yaml)", message: "\(error)")
        }
        guard let root else {
            throw TopologyError(file: file, key: "(file)", message: "is empty; it must describe at least `cluster` and `domains`")
        }
        var loader = TopologyLoader(file: file, baseDirectory: absolutePath(baseDirectory, base: FileManager.default.currentDirectoryPath))
        let topology = try loader.topology(root)
        try TopologyValidator(topology: topology, loader: loader).validate()
        return topology
    }

    private static func describe(_ error: YamlError, in yaml: String) -> String {
        switch error {
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().map { "`\($0)`" }.joined(separator: ", ")
            return "key \(keys) appears more than once in one mapping (line \(context.mark.line))"
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            // `listen: [::1]:7000` is the likely culprit: unquoted, YAML reads `[` as a list.
            let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
            let text = mark.line >= 1 && mark.line <= lines.count ? lines[mark.line - 1] : ""
            let hint = text.contains("[") && text.contains("]:") ? "; quote IPv6 addresses, as in \"[::1]:7000\"" : ""
            return "not valid YAML: \(problem) (line \(mark.line), column \(mark.column))\(hint)"
        default:
            return "not valid YAML: \(error)"
        }
    }

    /// `path` made absolute against `base`, with `~` expanded and `.`/`..` removed.
    static func absolutePath(_ path: String, base: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let joined = expanded.hasPrefix("/") ? expanded : (base as NSString).appendingPathComponent(expanded)
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }
}

/// Turns the YAML tree into a `Topology`, checking each value where it stands.
struct TopologyLoader {
    let file: String
    let baseDirectory: String
    /// Line numbers by key path, so that cross-checks can point at the line too.
    private(set) var lines: [String: Int] = [:]

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
    }

    /// An error at `key`, with the line of the key or, for a missing key, of its parent.
    func error(_ key: String, _ message: String) -> TopologyError {
        var probe = Substring(key)
        while !probe.isEmpty {
            if let line = lines[String(probe)] {
                return TopologyError(file: file, key: key, message: "\(message) (line \(line))")
            }
            guard let cut = probe.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            probe = probe[..<cut]
        }
        return TopologyError(file: file, key: key, message: message)
    }

    mutating func topology(_ root: Node) throws(TopologyError) -> Topology {
        let map = try mapping(root, at: "")
        try map.rejectUnknown(["cluster", "redis", "links", "paths", "logLevel", "presence", "loginCenter", "domains"], loader: self)

        let cluster = try requiredString(map, "cluster")
        let redis = try optionalString(map, "redis") ?? Topology.defaultRedis
        let links = try optionalEnum(map, "links", LinkSecurity.self) ?? .tls
        let logLevel = try optionalString(map, "logLevel") ?? "info"

        var dataDirectory = ".myim/data"
        var keysDirectory = ".myim/keys"
        if let pathsNode = map["paths"] {
            let paths = try mapping(pathsNode, at: "paths")
            try paths.rejectUnknown(["data", "keys"], loader: self)
            dataDirectory = try optionalString(paths, "data") ?? dataDirectory
            keysDirectory = try optionalString(paths, "keys") ?? keysDirectory
        }

        var presence = PresenceTiming()
        if let presenceNode = map["presence"] {
            let timing = try mapping(presenceNode, at: "presence")
            try timing.rejectUnknown(["ttlSeconds", "heartbeatSeconds"], loader: self)
            presence.ttlSeconds = try optionalInt(timing, "ttlSeconds") ?? presence.ttlSeconds
            presence.heartbeatSeconds = try optionalInt(timing, "heartbeatSeconds") ?? presence.heartbeatSeconds
        }

        let loginCenter: LoginCenterNode
        if let node = map["loginCenter"] {
            loginCenter = try self.loginCenter(try mapping(node, at: "loginCenter"))
        } else {
            loginCenter = LoginCenterNode(name: "login")
        }

        guard let domainsNode = map["domains"] else {
            throw error("domains", "is missing; a topology needs at least one domain with a center and an endpoint")
        }
        let domainNodes = try sequence(domainsNode, at: "domains")
        guard !domainNodes.isEmpty else {
            throw error("domains", "is empty; a topology needs at least one domain with a center and an endpoint")
        }
        var domains: [Domain] = []
        for (index, node) in domainNodes.enumerated() {
            domains.append(try domain(try mapping(node, at: "domains[\(index)]")))
        }

        return Topology(
            cluster: cluster,
            redis: redis,
            links: links,
            dataDirectory: Topology.absolutePath(dataDirectory, base: baseDirectory),
            keysDirectory: Topology.absolutePath(keysDirectory, base: baseDirectory),
            logLevel: logLevel,
            presence: presence,
            loginCenter: loginCenter,
            domains: domains,
            file: file
        )
    }

    private mutating func loginCenter(_ map: KeyedMapping) throws(TopologyError) -> LoginCenterNode {
        try map.rejectUnknown(["name", "listen", "advertise", "directory", "identity", "tokenLifetimeSeconds", "metrics"], loader: self)
        let listen = try optionalHostPort(map, "listen") ?? LoginCenterNode.defaultListen
        return LoginCenterNode(
            name: try optionalString(map, "name") ?? "login",
            listen: listen,
            advertise: try optionalHostPort(map, "advertise"),
            directory: try optionalHostPort(map, "directory"),
            identity: try optionalEnum(map, "identity", IdentityKeyKind.self) ?? .rsa,
            tokenLifetimeSeconds: try optionalInt(map, "tokenLifetimeSeconds") ?? LoginCenterNode.defaultTokenLifetimeSeconds,
            metrics: try optionalHostPort(map, "metrics")
        )
    }

    private mutating func domain(_ map: KeyedMapping) throws(TopologyError) -> Domain {
        try map.rejectUnknown(["name", "center", "endpoints"], loader: self)
        let name = try requiredString(map, "name")
        guard let centerNode = map["center"] else {
            throw error(map.path, "has no `center`; every domain needs one")
        }
        let centerMap = try mapping(centerNode, at: map.path + ".center")
        try centerMap.rejectUnknown(["name", "listen", "identity", "metrics"], loader: self)
        let center = CenterNode(
            name: try requiredString(centerMap, "name"),
            listen: try requiredHostPort(centerMap, "listen"),
            identity: try optionalEnum(centerMap, "identity", IdentityKeyKind.self) ?? .rsa,
            metrics: try optionalHostPort(centerMap, "metrics")
        )
        guard let endpointsNode = map["endpoints"] else {
            throw error(map.path + ".endpoints", "is missing; every domain needs at least one endpoint")
        }
        let endpointNodes = try sequence(endpointsNode, at: map.path + ".endpoints")
        guard !endpointNodes.isEmpty else {
            throw error(map.path + ".endpoints", "is empty; every domain needs at least one endpoint")
        }
        var endpoints: [EndpointNode] = []
        for (index, node) in endpointNodes.enumerated() {
            let endpoint = try mapping(node, at: "\(map.path).endpoints[\(index)]")
            try endpoint.rejectUnknown(["name", "listen", "advertise", "priority", "identity", "metrics"], loader: self)
            endpoints.append(EndpointNode(
                name: try requiredString(endpoint, "name"),
                listen: try requiredHostPort(endpoint, "listen"),
                advertise: try optionalHostPort(endpoint, "advertise"),
                priority: try optionalInt(endpoint, "priority") ?? EndpointNode.defaultPriority,
                identity: try optionalEnum(endpoint, "identity", IdentityKeyKind.self) ?? .ed25519,
                metrics: try optionalHostPort(endpoint, "metrics")
            ))
        }
        return Domain(name: name, center: center, endpoints: endpoints)
    }

    // MARK: - Typed reads

    private mutating func mapping(_ node: Node, at path: String) throws(TopologyError) -> KeyedMapping {
        if let line = node.mark?.line { lines[path] = line }
        guard case .mapping(let mapping) = node else {
            throw error(path.isEmpty ? "(document)" : path, "must be a mapping of keys to values, not \(kind(of: node))")
        }
        var pairs: [(key: String, value: Node)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw error(path.isEmpty ? "(document)" : path, "has a key that is not a plain name")
            }
            let keyPath = path.isEmpty ? scalar.string : "\(path).\(scalar.string)"
            if let line = value.mark?.line ?? key.mark?.line { lines[keyPath] = line }
            pairs.append((scalar.string, value))
        }
        return KeyedMapping(path: path, pairs: pairs)
    }

    private mutating func sequence(_ node: Node, at path: String) throws(TopologyError) -> [Node] {
        guard case .sequence(let sequence) = node else {
            throw error(path, "must be a list (items starting with `- `), not \(kind(of: node))")
        }
        for (index, item) in sequence.enumerated() {
            if let line = item.mark?.line { lines["\(path)[\(index)]"] = line }
        }
        return Array(sequence)
    }

    private func scalar(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> String? {
        guard let node = map[key] else { return nil }
        switch node {
        case .scalar(let scalar):
            // A bare `key:` is YAML null: treat it as absent so that required keys say "missing".
            if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) { return nil }
            return scalar.string
        default:
            throw error(map.keyPath(key), "must be a single value, not \(kind(of: node))")
        }
    }

    private func requiredString(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> String {
        guard let value = try scalar(map, key) else {
            throw error(map.path.isEmpty ? key : map.keyPath(key), "is missing")
        }
        return value
    }

    private func optionalString(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> String? {
        try scalar(map, key)
    }

    private func optionalInt(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> Int? {
        guard let text = try scalar(map, key) else { return nil }
        guard let value = Int(text) else {
            throw error(map.keyPath(key), "\"\(text)\" is not a whole number")
        }
        return value
    }

    private func optionalEnum<E: RawRepresentable>(_ map: KeyedMapping, _ key: String, _: E.Type) throws(TopologyError) -> E?
    where E.RawValue == String, E: CaseIterable {
        guard let text = try scalar(map, key) else { return nil }
        guard let value = E(rawValue: text) else {
            let allowed = E.allCases.map { "`\($0.rawValue)`" }.joined(separator: " or ")
            throw error(map.keyPath(key), "\"\(text)\" is not allowed; use \(allowed)")
        }
        return value
    }

    private func requiredHostPort(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> HostPort {
        guard let value = try optionalHostPort(map, key) else {
            throw error(map.keyPath(key), "is missing; give it as \"HOST:PORT\", e.g. \"127.0.0.1:7000\"")
        }
        return value
    }

    private func optionalHostPort(_ map: KeyedMapping, _ key: String) throws(TopologyError) -> HostPort? {
        if case .sequence = map[key] {
            throw error(map.keyPath(key), "reads as a YAML list: quote IPv6 addresses, as in \"[::1]:7000\"")
        }
        guard let text = try scalar(map, key) else { return nil }
        switch HostPort.parse(text) {
        case .success(let value):
            guard (1...65535).contains(value.port) else {
                throw error(map.keyPath(key), "port \(value.port) is out of range; ports are 1–65535")
            }
            return value
        case .failure(let failure):
            throw error(map.keyPath(key), failure.message)
        }
    }

    private func kind(of node: Node) -> String {
        switch node {
        case .scalar(let scalar): "the single value \"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }
}

/// A YAML mapping with string keys and the key path that leads to it.
struct KeyedMapping {
    let path: String
    let pairs: [(key: String, value: Node)]

    subscript(key: String) -> Node? {
        pairs.first { $0.key == key }?.value
    }

    func keyPath(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// Refuses keys this mapping does not define, naming the key and the ones allowed.
    func rejectUnknown(_ allowed: [String], loader: TopologyLoader) throws(TopologyError) {
        for (key, _) in pairs where !allowed.contains(key) {
            var hint = ""
            if let close = allowed.first(where: { $0.lowercased() == key.lowercased().replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "") }) {
                hint = " (did you mean `\(close)`?)"
            }
            let list = allowed.map { "`\($0)`" }.joined(separator: ", ")
            throw loader.error(keyPath(key), "unknown key\(hint); \(path.isEmpty ? "the top level" : "`\(path)`") allows \(list)")
        }
    }
}
