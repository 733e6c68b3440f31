import Crypto
import Foundation
import MyIMSecureChannel
import MyIMTransport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client's state directory: `$MYIM_HOME`, else `~/.config/myim`.
///
/// It holds
/// - `known_servers`: login-center keys trusted on first use (``KnownServers``);
/// - `session.json`: the last login's ``SavedSession`` (mode 0600);
/// - `device.key`: 32 random bytes created on first use (mode 0600), from which the device
///   fingerprints are derived; never hardware identifiers.
///
/// The directory is created with mode 0700 the first time something is written to it, so
/// that only reading (e.g. `myim whoami`) leaves no trace.
public struct ClientHome: Sendable, Equatable {
    /// The directory's path.
    public let path: String

    /// - Parameters:
    ///   - path: the directory to use; `~` is expanded. Absent: `MYIM_HOME` from
    ///     `environment`, else `~/.config/myim` under `HOME`.
    public init(path: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let path, !path.isEmpty {
            self.path = (path as NSString).expandingTildeInPath
        } else if let home = environment["MYIM_HOME"], !home.isEmpty {
            self.path = (home as NSString).expandingTildeInPath
        } else {
            let user = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            self.path = (user as NSString).appendingPathComponent(".config/myim")
        }
    }

    /// `<home>/known_servers`.
    public var knownServersPath: String { file("known_servers") }
    /// `<home>/session.json`.
    public var sessionPath: String { file("session.json") }
    /// `<home>/device.key`.
    public var deviceKeyPath: String { file("device.key") }

    /// Creates the directory (mode 0700) if it does not exist yet.
    public func prepare() throws(ClientError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ClientError(.internalError, "\(path) is not a directory; set MYIM_HOME or --home to another path") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
        } catch {
            throw ClientError(.internalError, "cannot create the client directory \(path): \(error.localizedDescription)")
        }
    }

    /// The recorded login-center keys.
    public func knownServers() throws(ClientError) -> KnownServers {
        do { return try KnownServers(path: knownServersPath) } catch { throw ClientError(.internalError, error.message) }
    }

    // MARK: - Device

    /// This machine's device fingerprint for `address`: `sha256:` and the lower-case hex of
    /// SHA-256(device key ‖ UTF-8 of the lower-cased address).
    ///
    /// Stable for one home directory and address; different for every address, so that
    /// accounts on one machine cannot be linked by it. Creates `device.key` on first use.
    public func deviceFingerprint(for address: String) throws(ClientError) -> String {
        var hasher = SHA256()
        hasher.update(data: try deviceKey())
        hasher.update(data: Data(address.trimmingWhitespace().lowercased().utf8))
        return "sha256:" + hasher.finalize().hexString
    }

    /// The 32-byte device key, created (mode 0600) if there is none yet.
    func deviceKey() throws(ClientError) -> [UInt8] {
        if let key = try readDeviceKey() { return key }
        try prepare()
        let temporary = deviceKeyPath + ".new-\(UUID().uuidString)"
        try writePrivateFile(temporary, contents: randomBytes(32))
        defer { unlink(temporary) }
        // link(2) is atomic and refuses to replace: when two processes race, both use the winner's key.
        if link(temporary, deviceKeyPath) != 0, errno != EEXIST {
            throw ClientError(.internalError, "cannot create \(deviceKeyPath): \(String(cString: strerror(errno)))")
        }
        guard let key = try readDeviceKey() else { throw ClientError(.internalError, "cannot read \(deviceKeyPath) after creating it") }
        return key
    }

    private func readDeviceKey() throws(ClientError) -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: deviceKeyPath) else { return nil }
        guard let data = FileManager.default.contents(atPath: deviceKeyPath) else {
            throw ClientError(.internalError, "cannot read \(deviceKeyPath)")
        }
        guard data.count == 32 else {
            throw ClientError(.internalError, "\(deviceKeyPath) holds \(data.count) bytes instead of 32; remove it to make a new one (this device will then be new to the login center)")
        }
        return Array(data)
    }

    // MARK: - Session

    /// Saves `session` as `session.json` (mode 0600), replacing the previous one atomically.
    public func saveSession(_ session: SavedSession) throws(ClientError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do { data = try encoder.encode(session) } catch { throw ClientError(.internalError, "cannot encode the session: \(error)") }
        try prepare()
        let temporary = sessionPath + ".new-\(UUID().uuidString)"
        try writePrivateFile(temporary, contents: Array(data) + [0x0a])
        guard rename(temporary, sessionPath) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw ClientError(.internalError, "cannot write \(sessionPath): \(reason)")
        }
    }

    /// The saved session; nil when there is none. Throws when the file exists but cannot be read.
    public func loadSession() throws(ClientError) -> SavedSession? {
        guard FileManager.default.fileExists(atPath: sessionPath) else { return nil }
        guard let data = FileManager.default.contents(atPath: sessionPath) else { throw ClientError(.internalError, "cannot read \(sessionPath)") }
        do {
            return try JSONDecoder().decode(SavedSession.self, from: data)
        } catch {
            throw ClientError(.internalError, "\(sessionPath) is not a saved session (\(error)); log in again to replace it")
        }
    }

    /// Removes the saved session, if any.
    public func clearSession() throws(ClientError) {
        guard FileManager.default.fileExists(atPath: sessionPath) else { return }
        do { try FileManager.default.removeItem(atPath: sessionPath) } catch {
            throw ClientError(.internalError, "cannot remove \(sessionPath): \(error.localizedDescription)")
        }
    }

    // MARK: - Files

    private func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Creates `path` with mode 0600 from the start (never readable by others, not even for a
    /// moment) and writes `contents`.
    private func writePrivateFile(_ path: String, contents: [UInt8]) throws(ClientError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw ClientError(.internalError, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var written = 0
        while written < contents.count {
            let result = contents[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                let reason = String(cString: strerror(errno))
                unlink(path)
                throw ClientError(.internalError, "cannot write \(path): \(reason)")
            }
            written += result
        }
    }
}
