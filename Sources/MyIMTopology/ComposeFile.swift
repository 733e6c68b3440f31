import Foundation

/// `myim topology compose`: a topology as a docker compose project. Two texts, both
/// deterministic (the same topology always gives the same bytes):
///
/// - `compose.yaml`: a one-shot `keys` service, `redis`, then one service per node (the login
///   center, each center, each endpoint), all from one image built from `docker/Dockerfile`;
/// - `topology.yaml`: the same cluster seen from inside the compose network, which every
///   container mounts at `/etc/myim/topology.yaml`.
///
/// Containers cannot reach each other on the host's 127.0.0.1, so in the container view every
/// node listens on `<service>:<port>` (the service is named after the node, and binding a
/// host name binds the container's address). Ports stay those of the source topology's
/// listen addresses; the login center's and the endpoints' client ports are published on the
/// host's 127.0.0.1 and advertised there, so that clients on the host can connect.
public enum DockerCompose {
    /// Where every container finds the container-view topology.
    public static let topologyPath = "/etc/myim/topology.yaml"
    /// The image's state directories; each role's data is a named volume, keys one shared volume.
    public static let dataDirectory = "/var/lib/myim/data"
    public static let keysDirectory = "/var/lib/myim/keys"
    /// The `redis` service, as the containers reach it.
    public static let redis = "redis://redis:6379/0"
    /// The one image every MyIM service runs (built once, from `dockerfile`).
    public static let image = "myim:local"
    /// Service names the generator uses itself; no node may be called so.
    public static let reservedServiceNames = ["keys", "redis"]

    /// The two generated files' text.
    public struct Files: Sendable, Equatable {
        /// `compose.yaml`.
        public var compose: String
        /// `topology.yaml`, the container view, written beside `compose.yaml`.
        public var topology: String
    }

    /// Generates both files from a loaded (validated) topology.
    ///
    /// - Parameters:
    ///   - source: the topology the host runs, as `Topology.load` returns it.
    ///   - sourceName: how the header names the source file (as the user gave it).
    ///   - buildContext: the build context, relative to the compose file's directory.
    ///   - dockerfile: the Dockerfile, relative to the build context.
    /// - Throws: `TopologyError` when the topology cannot become a compose project: a node named
    ///   like a generated service, or two nodes whose client ports would be published on the
    ///   same host port.
    public static func generate(
        from source: Topology,
        sourceName: String = "topology.yaml",
        buildContext: String = "..",
        dockerfile: String = "docker/Dockerfile"
    ) throws(TopologyError) -> Files {
        let view = try containerTopology(source)
        let topology = topologyYAML(view, sourceName: sourceName)
        // The containers load this text at start: make sure here that it loads and validates
        // (and describes the view it was written from), rather than in the first container.
        let reread = try Topology.parse(yaml: topology, baseDirectory: "/etc/myim", file: "docker/topology.yaml")
        guard reread == view else {
            throw TopologyError(file: "docker/topology.yaml", key: "(compose)", message: "the generated topology does not read back as written")
        }
        return Files(
            compose: composeYAML(view, sourceName: sourceName, buildContext: buildContext, dockerfile: dockerfile),
            topology: topology
        )
    }

    // MARK: - The container view

    /// The cluster as the containers see it: listeners on `<node>:<port>`, client-facing
    /// addresses advertised on the host's `127.0.0.1:<published port>`, Redis at the `redis`
    /// service, state under `/var/lib/myim`.
    public static func containerTopology(_ source: Topology) throws(TopologyError) -> Topology {
        for node in source.allNodes where reservedServiceNames.contains(node.name) {
            throw TopologyError(
                file: source.file,
                key: "(compose)",
                message: "node \"\(node.name)\" would clash with the generated `\(node.name)` service; rename the node"
            )
        }
        var published: [Int: String] = [:]
        func publish(_ port: Int, for node: String) throws(TopologyError) {
            if let other = published[port] {
                throw TopologyError(
                    file: source.file,
                    key: "(compose)",
                    message: "\(node) and \(other) would both be published on host port \(port); give their listen addresses different ports"
                )
            }
            published[port] = node
        }

        let login = source.loginCenter
        try publish(login.listen.port, for: login.name)
        let loginCenter = LoginCenterNode(
            name: login.name,
            listen: HostPort(host: login.name, port: login.listen.port),
            advertise: HostPort(host: "127.0.0.1", port: login.listen.port),
            directory: HostPort(host: login.name, port: login.directory.port),
            identity: login.identity,
            tokenLifetimeSeconds: login.tokenLifetimeSeconds,
            metrics: login.metrics.map { HostPort(host: login.name, port: $0.port) }
        )
        var domains: [Domain] = []
        for domain in source.domains {
            let center = CenterNode(
                name: domain.center.name,
                listen: HostPort(host: domain.center.name, port: domain.center.listen.port),
                identity: domain.center.identity,
                metrics: domain.center.metrics.map { HostPort(host: domain.center.name, port: $0.port) }
            )
            var endpoints: [EndpointNode] = []
            for endpoint in domain.endpoints {
                try publish(endpoint.listen.port, for: endpoint.name)
                endpoints.append(EndpointNode(
                    name: endpoint.name,
                    listen: HostPort(host: endpoint.name, port: endpoint.listen.port),
                    advertise: HostPort(host: "127.0.0.1", port: endpoint.listen.port),
                    priority: endpoint.priority,
                    identity: endpoint.identity,
                    metrics: endpoint.metrics.map { HostPort(host: endpoint.name, port: $0.port) }
                ))
            }
            domains.append(Domain(name: domain.name, center: center, endpoints: endpoints))
        }
        return Topology(
            cluster: source.cluster,
            redis: redis,
            links: source.links,
            dataDirectory: dataDirectory,
            keysDirectory: keysDirectory,
            logLevel: source.logLevel,
            presence: source.presence,
            loginCenter: loginCenter,
            domains: domains,
            file: "docker/topology.yaml"
        )
    }

    // MARK: - topology.yaml

    /// The container view as topology YAML, every key written out (no defaults left implicit).
    static func topologyYAML(_ view: Topology, sourceName: String) -> String {
        var out = YAMLLines()
        out.comment("""
            The cluster of \(sourceName) as the containers of compose.yaml see it (mounted at
            \(topologyPath)): every node listens on <service>:<port>, and the login center
            and the endpoints advertise the host's 127.0.0.1 ports compose.yaml publishes.
            Generated by `myim topology compose`; do not edit by hand: edit \(sourceName) and
            run `myim topology compose` again.
            """)
        out.blank()
        out.line("cluster: \(scalar(view.cluster))")
        out.line("redis: \(scalar(view.redis))")
        out.line("links: \(view.links.rawValue)")
        out.line("paths:")
        out.line("  data: \(scalar(view.dataDirectory))")
        out.line("  keys: \(scalar(view.keysDirectory))")
        out.line("logLevel: \(scalar(view.logLevel))")
        out.line("presence:")
        out.line("  ttlSeconds: \(view.presence.ttlSeconds)")
        out.line("  heartbeatSeconds: \(view.presence.heartbeatSeconds)")
        out.blank()
        let login = view.loginCenter
        out.line("loginCenter:")
        out.line("  name: \(scalar(login.name))")
        out.line("  listen: \(scalar(login.listen.description))")
        out.line("  advertise: \(scalar(login.advertise.description))")
        out.line("  directory: \(scalar(login.directory.description))")
        out.line("  identity: \(login.identity.rawValue)")
        out.line("  tokenLifetimeSeconds: \(login.tokenLifetimeSeconds)")
        if let metrics = login.metrics { out.line("  metrics: \(scalar(metrics.description))") }
        out.blank()
        out.line("domains:")
        for domain in view.domains {
            out.line("  - name: \(scalar(domain.name))")
            out.line("    center:")
            out.line("      name: \(scalar(domain.center.name))")
            out.line("      listen: \(scalar(domain.center.listen.description))")
            out.line("      identity: \(domain.center.identity.rawValue)")
            if let metrics = domain.center.metrics { out.line("      metrics: \(scalar(metrics.description))") }
            out.line("    endpoints:")
            for endpoint in domain.endpoints {
                out.line("      - name: \(scalar(endpoint.name))")
                out.line("        listen: \(scalar(endpoint.listen.description))")
                out.line("        advertise: \(scalar(endpoint.advertise.description))")
                out.line("        priority: \(endpoint.priority)")
                out.line("        identity: \(endpoint.identity.rawValue)")
                if let metrics = endpoint.metrics { out.line("        metrics: \(scalar(metrics.description))") }
            }
        }
        return out.text
    }

    // MARK: - compose.yaml

    /// One service of the compose file, in the order its keys are written.
    private struct Service {
        var name: String
        var node: String?
        var command: [String]
        var published: Int?
        var dependsOn: [(service: String, condition: String)]
    }

    static func composeYAML(_ view: Topology, sourceName: String, buildContext: String, dockerfile: String) -> String {
        let topologyArguments = ["--topology", topologyPath]
        var roles: [Service] = []
        let login = view.loginCenter
        roles.append(Service(
            name: login.name, node: login.name, command: ["login-center"] + topologyArguments,
            published: login.listen.port,
            dependsOn: [("keys", "service_completed_successfully")]
        ))
        for domain in view.domains {
            roles.append(Service(
                name: domain.center.name, node: domain.center.name,
                command: ["center", "--node", domain.center.name] + topologyArguments,
                published: nil,
                dependsOn: [
                    ("keys", "service_completed_successfully"),
                    ("redis", "service_healthy"),
                    (login.name, "service_healthy"),
                ]
            ))
        }
        for domain in view.domains {
            for endpoint in domain.endpoints {
                roles.append(Service(
                    name: endpoint.name, node: endpoint.name,
                    command: ["endpoint", "--node", endpoint.name] + topologyArguments,
                    published: endpoint.listen.port,
                    dependsOn: [
                        ("keys", "service_completed_successfully"),
                        ("redis", "service_healthy"),
                        (domain.center.name, "service_healthy"),
                    ]
                ))
            }
        }

        var out = YAMLLines()
        var clients = [("login center", login.advertise.description)]
        for domain in view.domains {
            clients += domain.endpoints.map { ("endpoint \($0.name)", $0.advertise.description) }
        }
        let width = clients.map(\.0.count).max() ?? 0
        let clientLines = clients.map { "  \($0.0.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.1)" }
        out.comment("""
            The MyIM cluster of \(sourceName) (\(view.cluster)) as docker compose services.
            Generated by `myim topology compose`; do not edit by hand: edit \(sourceName) and
            run `myim topology compose` again.

              docker compose -f docker/compose.yaml up --build

            Every container reads topology.yaml (beside this file, the same cluster seen from
            inside the compose network) at \(topologyPath). `keys` runs `myim keys init` once
            into the shared keys volume; then the login center, the centers and the endpoints
            start in that order, each when the one before answers its health check.
            Clients on this host connect to:
            \(clientLines.joined(separator: "\n"))
            """)
        out.blank()
        out.line("services:")

        out.line("  keys:")
        appendImage(&out, buildContext: buildContext, dockerfile: dockerfile)
        out.line("    command: \(flow(["keys", "init"] + topologyArguments))")
        out.line("    volumes:")
        out.line("      - \(quoted("./topology.yaml:\(topologyPath):ro"))")
        out.line("      - \(quoted("keys:\(keysDirectory)"))")
        out.line("    healthcheck:")
        out.line("      disable: true")
        out.line("    restart: \(quoted("no"))")
        out.blank()

        out.line("  redis:")
        out.line("    image: redis:7")
        out.line("    command: \(flow(["redis-server", "--save", "", "--appendonly", "no"]))")
        out.line("    healthcheck:")
        out.line("      test: \(flow(["CMD", "redis-cli", "ping"]))")
        out.line("      interval: 5s")
        out.line("      timeout: 3s")
        out.line("      retries: 10")
        out.line("    stop_grace_period: 10s")
        out.line("    restart: unless-stopped")

        for role in roles {
            out.blank()
            out.line("  \(scalar(role.name)):")
            appendImage(&out, buildContext: buildContext, dockerfile: dockerfile)
            out.line("    command: \(flow(role.command))")
            if let node = role.node {
                out.line("    environment:")
                out.line("      MYIM_NODE: \(quoted(node))")
            }
            out.line("    volumes:")
            out.line("      - \(quoted("./topology.yaml:\(topologyPath):ro"))")
            out.line("      - \(quoted("keys:\(keysDirectory):ro"))")
            out.line("      - \(quoted("\(role.name)-data:\(dataDirectory)"))")
            if let port = role.published {
                out.line("    ports:")
                out.line("      - \(quoted("127.0.0.1:\(port):\(port)"))")
            }
            out.line("    depends_on:")
            for dependency in role.dependsOn {
                out.line("      \(scalar(dependency.service)):")
                out.line("        condition: \(dependency.condition)")
            }
            // tini as PID 1 passes SIGTERM on; the grace period lets the role close its
            // connections and flush its database before SIGKILL.
            out.line("    init: true")
            out.line("    stop_grace_period: 30s")
            out.line("    restart: unless-stopped")
        }

        out.blank()
        out.line("volumes:")
        out.line("  keys:")
        for role in roles {
            out.line("  \(scalar("\(role.name)-data")):")
        }
        return out.text
    }

    private static func appendImage(_ out: inout YAMLLines, buildContext: String, dockerfile: String) {
        out.line("    image: \(image)")
        out.line("    build:")
        out.line("      context: \(quoted(buildContext))")
        out.line("      dockerfile: \(quoted(dockerfile))")
    }

    // MARK: - YAML text

    /// Words YAML 1.1 (docker-compose's PyYAML) reads as booleans or null when plain.
    private static let yaml11Words: Set<String> = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ]

    /// `text` as a plain scalar when every YAML reader takes it as that same string, else
    /// double-quoted.
    static func scalar(_ text: String) -> String {
        let safe = !text.isEmpty
            && text.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || [UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "/"), UInt8(ascii: ":")].contains(byte)
            }
            // A letter, or an IPv4 literal's three dots: never a number, even a YAML 1.1
            // sexagesimal one (`7000:7000`).
            && (text.utf8.contains { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }
                || text.utf8.filter { $0 == UInt8(ascii: ".") }.count >= 3)
            && !["-", ".", ":"].contains(text.first!)
            && !text.hasSuffix(":")
            && !yaml11Words.contains(text.lowercased())
        return safe ? text : quoted(text)
    }

    /// `text` double-quoted, with `\` and `"` escaped (control characters never occur here).
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// A flow sequence of double-quoted strings: `["a", "b"]`.
    static func flow(_ items: [String]) -> String {
        "[" + items.map(quoted).joined(separator: ", ") + "]"
    }
}

/// Lines of YAML text, ending with a newline.
private struct YAMLLines {
    private var lines: [String] = []

    mutating func line(_ text: String) { lines.append(text) }

    mutating func blank() { lines.append("") }

    /// `# `-prefixed lines (a bare `#` for an empty one).
    mutating func comment(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lines.append(line.isEmpty ? "#" : "# \(line)")
        }
    }

    var text: String { lines.joined(separator: "\n") + "\n" }
}
