import Foundation
import MyIMSecureChannel

/// The client's record of server keys it has trusted on first use, like SSH's `known_hosts`.
///
/// One line per server: `host:port sha256:<64 hex>`. Blank lines and lines starting with
/// `#` are ignored. A server whose key differs from the recorded one is refused (see
/// ``ServerKeyPolicy/trustOnFirstUse(recorded:)``); the user removes the line by hand after
/// checking the new key out of band, never the client on its own.
public struct KnownServers: Sendable, Equatable {
    public let path: String
    public private(set) var entries: [String: KeyFingerprint]

    /// Loads the file; a missing file is an empty record.
    public init(path: String) throws(KnownServersError) {
        self.path = path
        entries = [:]
        guard FileManager.default.fileExists(atPath: path) else { return }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw KnownServersError("cannot read \(path): \(error.localizedDescription)")
        }
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2, let fingerprint = KeyFingerprint(String(fields[1])) else {
                throw KnownServersError("\(path):\(index + 1): expected 'host:port sha256:<64 hex>', found '\(line)'")
            }
            entries[String(fields[0])] = fingerprint
        }
    }

    /// The policy for connecting to `server` (`host:port`).
    public func policy(for server: String) -> ServerKeyPolicy {
        .trustOnFirstUse(recorded: entries[server])
    }

    /// Records a key seen for the first time and appends it to the file (created 0600 if new).
    public mutating func record(_ fingerprint: KeyFingerprint, for server: String) throws(KnownServersError) {
        guard entries[server] == nil else {
            throw KnownServersError("\(server) already has a recorded key in \(path); remove that line by hand to replace it")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let line = "\(server) \(fingerprint)\n"
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                    throw KnownServersError("cannot create \(path)")
                }
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(line.utf8))
        } catch let error as KnownServersError {
            throw error
        } catch {
            throw KnownServersError("cannot write \(path): \(error.localizedDescription)")
        }
        entries[server] = fingerprint
    }
}

/// A known-servers file that cannot be read or written.
public struct KnownServersError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
