import ArgumentParser
import Foundation
import Logging
import MyIMOps
import MyIMPresence
import MyIMRedis
import MyIMTopology

/// Where a node can be reached from this machine: an unspecified listen host means loopback.
private func reachable(_ address: HostPort) -> (host: String, port: Int) {
    (address.isUnspecified ? "127.0.0.1" : address.host, address.port)
}

/// A node's roles, listen and metrics addresses, from the topology.
private struct NodeAddresses {
    var role: String
    var name: String
    var domain: String?
    var listen: HostPort
    var metrics: HostPort?

    static func all(in topology: Topology) -> [NodeAddresses] {
        var nodes = [NodeAddresses(role: "login-center", name: topology.loginCenter.name, listen: topology.loginCenter.listen, metrics: topology.loginCenter.metrics)]
        for domain in topology.domains {
            nodes.append(NodeAddresses(role: "center", name: domain.center.name, domain: domain.name, listen: domain.center.listen, metrics: domain.center.metrics))
            for endpoint in domain.endpoints {
                nodes.append(NodeAddresses(role: "endpoint", name: endpoint.name, domain: domain.name, listen: endpoint.listen, metrics: endpoint.metrics))
            }
        }
        return nodes
    }

    /// Up or down, with what `/health` said (or a TCP check when there is no metrics address).
    func probe() async -> Probe {
        guard let metrics else {
            let (host, port) = reachable(listen)
            let up = await OpsProbe.accepts(host: host, port: port)
            return Probe(up: up, detail: up ? "accepts connections (no metrics address: no version or uptime)" : "does not accept connections on \(listen)")
        }
        let (host, port) = reachable(metrics)
        do {
            let response = try await OpsProbe.get(host: host, port: port, path: "/health")
            let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
            return Probe(up: response.status == 200, health: object, detail: response.status == 200 ? "" : "health answered \(response.status)")
        } catch {
            return Probe(up: false, detail: "no health answer on \(metrics): \(OpsProbe.describe(error))")
        }
    }

    struct Probe {
        var up: Bool
        var health: [String: Any] = [:]
        var detail: String
    }
}

/// `myim health --node NAME`: exit 0 when the node answers its health check (the container
/// HEALTHCHECK and compose's `service_healthy`).
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Check one node: 0 when it is healthy, 1 when not.",
        discussion: """
            With a metrics address in the topology, the node's /health must answer 200 (an endpoint without its \
            center answers 503); without one, its listen address must accept a TCP connection.
            """
    )

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Option(help: "The node to check.")
    var node: String

    func run() async throws {
        let topology = try Topology.load(path: topology)
        guard let target = NodeAddresses.all(in: topology).first(where: { $0.name == node }) else {
            throw ValidationError("no node is named '\(node)' in \(topology.file)")
        }
        let probe = await target.probe()
        print(probe.up ? "\(node): healthy" : "\(node): unhealthy: \(probe.detail)")
        if !probe.up { throw ExitCode(1) }
    }
}

/// `myim status`: every role of the topology, up or down, and what Redis says is online.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every role of the topology (up or down, version, uptime), who is online, and queued messages.",
        discussion: "Exits with 1 when a role or Redis is down."
    )

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let topology = try Topology.load(path: topology)
        let nodes = NodeAddresses.all(in: topology)
        var probes: [NodeAddresses.Probe] = []
        for node in nodes { probes.append(await node.probe()) }

        // Redis: who is online, per endpoint and per domain.
        var redisUp = false
        var redisDetail = ""
        var online: [String: Int] = [:]
        var domainOnline: [String: Int] = [:]
        var liveEndpoints: [String: [String]] = [:]
        do {
            let connection = try await RedisConnection.connect(to: try RedisURL(topology.redis))
            redisUp = true
            for domain in topology.domains {
                let store = RedisPresenceStore(connection: connection, domain: domain.name)
                domainOnline[domain.name] = try await store.onlineCount(domain: domain.name)
                liveEndpoints[domain.name] = try await store.liveEndpoints(domain: domain.name)
                for endpoint in domain.endpoints {
                    let reply = try await connection.send(["SCARD", "myim:\(domain.name):endpoint:\(endpoint.name):users"])
                    online[endpoint.name] = Int(reply.int ?? 0)
                }
            }
            try? await connection.close()
        } catch {
            redisDetail = "\(error)"
        }

        let allUp = redisUp && probes.allSatisfy(\.up)
        if json {
            var roles: [[String: Any]] = []
            for (node, probe) in zip(nodes, probes) {
                var entry: [String: Any] = ["role": node.role, "node": node.name, "up": probe.up]
                if let domain = node.domain { entry["domain"] = domain }
                for (key, value) in probe.health where key != "role" && key != "node" { entry[key] = value }
                if !probe.detail.isEmpty { entry["detail"] = probe.detail }
                if node.role == "endpoint", let count = online[node.name] { entry["online_users"] = count }
                roles.append(entry)
            }
            let object: [String: Any] = [
                "ok": allUp, "roles": roles,
                "redis": ["up": redisUp, "url": (try? RedisURL(topology.redis).description) ?? topology.redis, "error": redisDetail],
                "domains": topology.domains.map { ["domain": $0.name, "online_users": domainOnline[$0.name] ?? 0, "live_endpoints": liveEndpoints[$0.name] ?? []] },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(pad("ROLE", 13) + pad("NODE", 16) + pad("STATE", 7) + pad("VERSION", 9) + pad("UPTIME", 9) + "DETAIL")
            for (node, probe) in zip(nodes, probes) {
                let uptime = (probe.health["uptime_seconds"] as? Int).map(Self.duration) ?? "-"
                var details: [String] = []
                if let sessions = probe.health["sessions"] as? Int { details.append("\(sessions) sessions") }
                if node.role == "endpoint", let count = online[node.name] { details.append("\(count) online in Redis") }
                if let queued = probe.health["offline_messages"] as? Int { details.append("\(queued) queued 1:1") }
                if let queued = probe.health["group_messages"] as? Int { details.append("\(queued) queued group") }
                if !probe.detail.isEmpty { details.append(probe.detail) }
                print(pad(node.role, 13) + pad(node.name, 16) + pad(probe.up ? "up" : "DOWN", 7)
                    + pad(probe.health["version"] as? String ?? "-", 9) + pad(uptime, 9) + details.joined(separator: ", "))
            }
            let redisURL = (try? RedisURL(topology.redis).description) ?? topology.redis
            print(pad("redis", 13) + pad(redisURL, 16) + " " + (redisUp ? "up" : "DOWN  \(redisDetail)"))
            for domain in topology.domains where redisUp {
                let live = liveEndpoints[domain.name] ?? []
                print("\(domain.name): \(domainOnline[domain.name] ?? 0) online; live endpoints: \(live.isEmpty ? "none" : live.joined(separator: ", "))")
            }
        }
        if !allUp { throw ExitCode(1) }
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }

    private static func duration(_ seconds: Int) -> String {
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)m\(seconds % 60)s" }
        return "\(seconds / 3600)h\(seconds / 60 % 60)m"
    }
}
