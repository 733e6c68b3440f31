import ArgumentParser
import Crypto
import Foundation
import MyIMAuth
import MyIMBench
import MyIMOps
import MyIMSecureChannel
import MyIMTopology

/// MyIM's servers as separate processes, for the benchmarks that must read the servers' CPU apart
/// from the generator's: a topology in a temporary directory (one domain, a center and two
/// endpoints, a login center, every port free, links as `links` says), `keys init`, then
/// redis-server and each role started by this process as `myim <role>` — pinned with taskset to
/// `cpus` when given — and waited for until every endpoint's link to the center is up.
///
/// The bench issues its clients' tokens itself with the topology's token-signing key, as the
/// login center would after a login: the benchmarks measure the servers a client talks to once
/// it has a token.
final class BenchServers: Sendable {
    static let domain = BenchMessages.domain
    static let endpointNames = ["bench-ep1", "bench-ep2"]

    /// A process the bench started, by role name.
    struct Server: Sendable {
        var name: String
        var pid: Int32
    }

    let directory: URL
    let servers: [Server]
    /// The client ports and identity fingerprints of the senders' endpoint and the receivers'
    /// (``endpointNames`` in order; both endpoint 1 with `allInOne`).
    let endpointPorts: [Int]
    let fingerprints: [KeyFingerprint]
    /// The login center's client port and identity fingerprint.
    let loginPort: Int
    let loginFingerprint: KeyFingerprint
    let issuer: TokenIssuer
    let cpus: String?
    private let supervisor: Supervisor
    private let redisURL: String

    private init(
        directory: URL, servers: [Server], endpointPorts: [Int], fingerprints: [KeyFingerprint], loginPort: Int,
        loginFingerprint: KeyFingerprint, issuer: TokenIssuer, cpus: String?, supervisor: Supervisor, redisURL: String
    ) {
        self.directory = directory
        self.servers = servers
        self.endpointPorts = endpointPorts
        self.fingerprints = fingerprints
        self.loginPort = loginPort
        self.loginFingerprint = loginFingerprint
        self.issuer = issuer
        self.cpus = cpus
        self.supervisor = supervisor
        self.redisURL = redisURL
    }

    /// The endpoints' processes, in ``endpointNames`` order.
    var endpointPIDs: [Int32] { Self.endpointNames.compactMap { name in servers.first { $0.name == name }?.pid } }

    /// Starts everything, or stops what it started and throws. `maxConnectionsPerSource` lifts the
    /// endpoints' per-address limit, since every bench client comes from 127.0.0.1.
    /// `loginIdentity` is the login center's key (`rsa` as a cluster's default, or `ed25519`).
    /// With `allInOne`, one process runs the login center, the center and endpoint 1
    /// (`myim serve --all-in-one`, presence in memory, no Redis): both ``endpointPorts`` are its.
    static func start(
        links: String, cpus: String?, maxConnectionsPerSource: Int, loginIdentity: IdentityKeyKind = .ed25519, allInOne: Bool = false,
        logLevel: String = "warning"
    ) async throws -> BenchServers {
        guard links == "tls" || links == "plain" else { throw ValidationError("links must be tls or plain") }
        removeLeftovers()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(directoryPrefix)\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try String(getpid()).write(to: directory.appendingPathComponent(ownerFile), atomically: true, encoding: .utf8)
        let supervisor = Supervisor()
        var servers: [Server] = []
        var redisURL = ""
        do {
            let ports = try await distinctFreePorts(9)
            if !allInOne { redisURL = "redis://127.0.0.1:\(ports[0])/0" }
            let topologyPath = directory.appendingPathComponent("topology.yaml").path
            try topologyText(ports: ports, links: links, loginIdentity: loginIdentity, logLevel: logLevel).write(toFile: topologyPath, atomically: true, encoding: .utf8)
            let topology = try Topology.load(path: topologyPath)
            _ = try ClusterKeys.initialize(for: topology)
            let keys = ClusterKeys(topology: topology)

            // taskset execs the program, so the pid it gets is the server's own.
            let pin: [String]
            if let cpus {
                guard let taskset = MosquittoServer.locateTaskset() else { throw ValidationError("--server-cpus needs taskset (util-linux)") }
                pin = [taskset, "-c", cpus]
            } else {
                pin = []
            }
            func launch(_ name: String, _ command: [String]) throws {
                let full = pin + command
                let pid = try supervisor.start(name: name, executable: full[0], arguments: Array(full.dropFirst()), quiet: true)
                BenchChildren.adopt(pid)  // Killed if the bench is interrupted.
                servers.append(Server(name: name, pid: pid))
            }
            let binary = ClusterCommand.Up.ownExecutable()
            /// Waits until `name`'s endpoint says on /health that it listens and is linked to the center.
            func waitForHealth(_ name: String, metricsPort: Int) async throws {
                try await ClusterCommand.Up.waitFor(name, timeout: 30) {
                    guard supervisor.allRunning else { throw ValidationError("a server exited while starting; see its lines above") }
                    return (try? await OpsProbe.get(host: "127.0.0.1", port: metricsPort, path: "/health"))?.status == 200
                }
            }
            let clientEndpoints: [(node: String, port: Int)]
            if allInOne {
                try launch("all-in-one", [binary, "serve", "--all-in-one", "--topology", topologyPath,
                                          "--max-connections-per-source", String(maxConnectionsPerSource)])
                try await waitForHealth("all-in-one", metricsPort: ports[7])
                clientEndpoints = [(endpointNames[0], ports[3]), (endpointNames[0], ports[3])]
            } else {
                guard let redis = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: FileManager.default.isExecutableFile) else {
                    throw ValidationError("redis-server is not installed: `apt-get install -y redis-server` (make deps does it)")
                }
                let redisLog = directory.appendingPathComponent("redis.log").path
                try launch("redis", [redis, "--port", String(ports[0]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", redisLog])
                try await ClusterCommand.Up.waitFor("redis", timeout: 10) { try await ClusterCommand.Up.redisAnswers(redisURL) }
                try launch("login", [binary, "login-center", "--topology", topologyPath])
                try launch("bench-center", [binary, "center", "--topology", topologyPath, "--node", "bench-center"])
                // The endpoints dial the center at once: let it listen first.
                try await ClusterCommand.Up.waitFor("bench-center", timeout: 30) {
                    guard supervisor.allRunning else { throw ValidationError("a server exited while starting; see its lines above") }
                    return await OpsProbe.accepts(host: "127.0.0.1", port: ports[2])
                }
                for name in endpointNames {
                    try launch(name, [binary, "endpoint", "--topology", topologyPath, "--node", name,
                                      "--max-connections-per-source", String(maxConnectionsPerSource)])
                }
                for (name, metricsPort) in zip(endpointNames, [ports[7], ports[8]]) { try await waitForHealth(name, metricsPort: metricsPort) }
                clientEndpoints = [(endpointNames[0], ports[3]), (endpointNames[1], ports[4])]
            }
            let fingerprints = try clientEndpoints.map { try keys.identityPublicKey(for: $0.node).fingerprint }
            let issuer = await TokenIssuer(signingKey: try keys.tokenSigningKey(), issuer: "myim:bench")
            return BenchServers(
                directory: directory, servers: servers, endpointPorts: clientEndpoints.map(\.port), fingerprints: fingerprints,
                loginPort: ports[1], loginFingerprint: try keys.identityPublicKey(for: "login").fingerprint, issuer: issuer, cpus: cpus,
                supervisor: supervisor, redisURL: redisURL)
        } catch {
            await ClusterCommand.Up.stop(supervisor, redis: redisURL.isEmpty ? nil : redisURL)
            for server in servers { BenchChildren.release(server.pid) }
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    static let directoryPrefix = "myim-bench-servers-"
    /// The pid of the bench that owns a directory, in it.
    static let ownerFile = "owner.pid"

    /// Removes the directories (topology, keys, data) of benches that were interrupted: a signal
    /// stops the servers at once (``BenchChildren``) but can do nothing as unsafe as deleting
    /// files. A directory is left while the bench that wrote its `owner.pid` still runs.
    static func removeLeftovers() {
        let temporary = FileManager.default.temporaryDirectory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: temporary.path) else { return }
        for name in names where name.hasPrefix(directoryPrefix) {
            let directory = temporary.appendingPathComponent(name)
            let owner = (try? String(contentsOf: directory.appendingPathComponent(ownerFile), encoding: .utf8)).flatMap { Int32($0) }
            if let owner, owner == getpid() || kill(owner, 0) == 0 || errno == EPERM { continue }
            // No owner file (a bench of an older build): left alone for an hour, in case it still runs.
            if owner == nil,
               let modified = (try? FileManager.default.attributesOfItem(atPath: directory.path))?[.modificationDate] as? Date,
               Date().timeIntervalSince(modified) < 3600 {
                continue
            }
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A fresh token for `user`, as the login center would issue it.
    func token(for user: String, userID: Int64) async throws -> String {
        try await issuer.issue(address: user, userID: userID, sessionID: UUID().uuidString, device: "sha256:bench", now: Date()).token
    }

    /// Runs `body`, then stops the servers, whether it returned or threw.
    func stopping<T>(after body: () async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await body()
        } catch {
            await stop()
            throw error
        }
        await stop()
        return result
    }

    /// Meters for every server process, started now.
    func meters() -> [(name: String, meter: CPUMeter)] {
        servers.map { ($0.name, CPUMeter(pid: $0.pid)) }
    }

    /// Whether every server is still running.
    var allRunning: Bool { supervisor.allRunning }

    /// Stops the roles (SIGTERM: each drains), then Redis, and removes the directory.
    func stop() async {
        await ClusterCommand.Up.stop(supervisor, redis: redisURL.isEmpty ? nil : redisURL)
        for server in servers { BenchChildren.release(server.pid) }
        try? FileManager.default.removeItem(at: directory)
    }

    private static func topologyText(ports: [Int], links: String, loginIdentity: IdentityKeyKind, logLevel: String) -> String {
        """
        # Written by myim bench: removed when the bench ends.
        cluster: bench
        redis: redis://127.0.0.1:\(ports[0])/0
        links: \(links)
        paths:
          data: data
          keys: keys
        logLevel: \(logLevel)
        loginCenter:
          name: login
          listen: 127.0.0.1:\(ports[1])
          directory: 127.0.0.1:\(ports[5])
          identity: \(loginIdentity.rawValue)
        domains:
          - name: \(domain)
            center:
              name: bench-center
              listen: 127.0.0.1:\(ports[2])
              identity: ed25519
              metrics: 127.0.0.1:\(ports[6])
            endpoints:
              - name: bench-ep1
                listen: 127.0.0.1:\(ports[3])
                metrics: 127.0.0.1:\(ports[7])
              - name: bench-ep2
                listen: 127.0.0.1:\(ports[4])
                metrics: 127.0.0.1:\(ports[8])

        """
    }

    /// `count` different ports of 127.0.0.1 that were free a moment ago.
    private static func distinctFreePorts(_ count: Int) async throws -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let port = try await freeLocalPort()
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }
}
