import ArgumentParser
import Logging
import MyIMLoginCenter
import MyIMTopology

/// `myim login-center`: accounts, logins, tokens and server lists for the whole cluster.
struct LoginCenterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login-center",
        abstract: "Run the login center described by the topology file."
    )

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the topology's log_level).")
    var logLevel: String?

    func run() async throws {
        let topology = try Topology.load(path: topology)
        let logger = try makeLogger(label: "myim.login-center", node: topology.loginCenter.name, level: logLevel ?? topology.logLevel)
        let configuration = try LoginCenterConfiguration(topology: topology, keys: ClusterKeys(topology: topology))
        let store = try SQLiteAccountStore(path: configuration.databasePath)
        let center = await LoginCenter(configuration: configuration, store: store, logger: logger)
        let listener = try await center.bind()
        let directoryListener = try await center.bindDirectory()
        logger.notice("login center listening", metadata: [
            "address": "\(listener.channel.localAddress.display)",
            "directory": "\(directoryListener.channel.localAddress.display)",
            "links": "\(topology.links.rawValue)",
            "fingerprint": "\(configuration.identity.publicKey.fingerprint)",
            "database": "\(configuration.databasePath)",
        ])
        try await runRole(
            metrics: topology.loginCenter.metrics, role: "login-center", node: topology.loginCenter.name, logger: logger,
            health: { ([:], true) },
            serve: {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await center.serve(listener) }
                    group.addTask { try await center.serveDirectory(directoryListener) }
                }
            },
            drain: { await center.drain() })
        try? await center.shutdown()
    }
}

/// A logger for a server role: one line per event, with the role's node name.
func makeLogger(label: String, node: String, level: String) throws -> Logger {
    guard let level = Logger.Level(rawValue: level) else {
        throw ValidationError("log level '\(level)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    var logger = Logger(label: label)
    logger.logLevel = level
    logger[metadataKey: "node"] = "\(node)"
    return logger
}
