import Foundation
import MyIMWire
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One chat message as local history keeps it: message 18's keys, as on the wire (seed 000
/// keeps local history as JSON). Image bytes are base64 in `message.data`.
public struct HistoryRecord: Codable, Sendable, Equatable {
    /// Chat kind: 0 private, 1 group.
    public var type: Int64
    /// Server time, milliseconds since 1970.
    public var time: Int64
    public var senderID: Int64
    public var senderName: String
    public var targetID: Int64
    public var targetName: String
    public var message: HistoryContent
    public var serverMessageID: Int64
    public var clientMessageID: String
    public var qos: Int64
    /// Group sequence number (groups only).
    public var seq: Int64?
    /// The node that accepted the message.
    public var serverID: String?

    /// The record of `delivery`.
    public init(_ delivery: ChatDelivery) {
        type = delivery.kind.rawValue
        time = delivery.time
        senderID = delivery.senderID
        senderName = delivery.senderName
        targetID = delivery.targetID
        targetName = delivery.targetName
        message = HistoryContent(delivery.content)
        serverMessageID = delivery.serverMessageID
        clientMessageID = delivery.clientMessageID
        qos = delivery.qos.rawValue
        seq = delivery.seq
        serverID = delivery.serverID
    }

    /// The delivery this record holds; nil when a field is out of range (e.g. bad base64).
    public var delivery: ChatDelivery? {
        guard let kind = ChatKind(rawValue: type), let qos = QoS(rawValue: qos), let content = message.content else { return nil }
        return ChatDelivery(
            kind: kind, time: time, senderID: senderID, senderName: senderName, targetID: targetID, targetName: targetName,
            content: content, serverMessageID: serverMessageID, clientMessageID: clientMessageID, qos: qos, seq: seq,
            serverID: serverID)
    }

    /// One line of JSON (no line break) with the keys in message 18's order.
    public var jsonLine: String {
        var fields = [
            ("type", "\(type)"), ("time", "\(time)"), ("sender_id", "\(senderID)"), ("sender_name", Self.quoted(senderName)),
            ("target_id", "\(targetID)"), ("target_name", Self.quoted(targetName)), ("message", message.json),
            ("server_msg_id", "\(serverMessageID)"), ("client_msg_id", Self.quoted(clientMessageID)), ("qos", "\(qos)"),
        ]
        if let seq { fields.append(("seq", "\(seq)")) }
        if let serverID { fields.append(("server_id", Self.quoted(serverID))) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// `text` as a JSON string literal.
    static func quoted(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(text) else { return "\"\"" }
        return String(decoding: data, as: UTF8.self)
    }

    enum CodingKeys: String, CodingKey {
        case type, time, message, qos, seq
        case senderID = "sender_id"
        case senderName = "sender_name"
        case targetID = "target_id"
        case targetName = "target_name"
        case serverMessageID = "server_msg_id"
        case clientMessageID = "client_msg_id"
        case serverID = "server_id"
    }
}

/// The `message` of a ``HistoryRecord``: chat content with image bytes in base64.
public struct HistoryContent: Codable, Sendable, Equatable {
    /// 0 text, 1 image.
    public var type: Int64
    /// The text, or the image bytes in base64.
    public var data: String
    /// The image's media type.
    public var mime: String?

    public init(_ content: ChatContent) {
        switch content {
        case .text(let text):
            type = 0
            data = text
            mime = nil
        case .image(let bytes, let mime):
            type = 1
            data = Data(bytes).base64EncodedString()
            self.mime = mime
        }
    }

    /// The content; nil for an unknown type or bad base64.
    public var content: ChatContent? {
        switch type {
        case 0: return .text(data)
        case 1: return Data(base64Encoded: data).map { .image(bytes: Array($0), mime: mime) }
        default: return nil
        }
    }

    var json: String {
        var fields = [("type", "\(type)"), ("data", HistoryRecord.quoted(data))]
        if let mime { fields.append(("mime", HistoryRecord.quoted(mime))) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}

/// Local history: `<home>/history/<peer address>.jsonl`, one ``HistoryRecord`` a line, in the
/// order messages arrived; the directory is mode 0700 and each file 0600.
///
/// Appending is deduplicated by `server_msg_id` (a message redelivered after a crash, before
/// its acknowledgement reached the server, is not written twice), also across processes
/// sharing the directory: each append holds an exclusive `flock` on the file while it checks
/// and writes.
public final class MessageHistory: Sendable {
    /// The client directory.
    public let home: ClientHome
    /// Whose history this is (lower case): the peer of a message is its other party.
    public let owner: String

    /// Per file: the bytes already scanned and the ids found in them.
    private struct Scan {
        var offset: Int = 0
        var ids: Set<Int64> = []
    }
    private let scans = Mutex<[String: Scan]>([:])

    public init(home: ClientHome, owner: String) {
        self.home = home
        self.owner = owner.lowercased()
    }

    /// `<home>/history`.
    public var directory: String { (home.path as NSString).appendingPathComponent("history") }

    /// The other party of `delivery` seen from ``owner``: the recipient of what the owner sent,
    /// else the sender; `group-<id>` for group messages.
    public func peer(of delivery: ChatDelivery) -> String {
        switch delivery.kind {
        case .group: return "group-\(delivery.targetID)"
        case .user: return delivery.senderName.lowercased() == owner ? delivery.targetName.lowercased() : delivery.senderName.lowercased()
        }
    }

    /// The history file for `peer`. Characters other than letters, digits and `@._+-` become
    /// `_`, and a leading dot is escaped, so that the name stays inside the directory.
    public func path(forPeer peer: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789@._+-")
        var name = String(peer.lowercased().map { allowed.contains($0) ? $0 : "_" })
        if name.isEmpty || name.hasPrefix(".") { name = "_" + name }
        return (directory as NSString).appendingPathComponent(name + ".jsonl")
    }

    /// Appends `delivery` to its peer's file unless a record with its `server_msg_id` is
    /// already there. Returns whether it was written.
    @discardableResult
    public func append(_ delivery: ChatDelivery) throws(ClientError) -> Bool {
        let path = path(forPeer: peer(of: delivery))
        let line = Array((HistoryRecord(delivery).jsonLine + "\n").utf8)
        // The lock serialises this process's appends; flock serialises processes.
        return try scans.withLock { scans throws(ClientError) -> Bool in
            try prepareDirectory()
            let descriptor = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw Self.failure("cannot open", path) }
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX) == 0 else { throw Self.failure("cannot lock", path) }
            defer { flock(descriptor, LOCK_UN) }
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw Self.failure("cannot stat", path) }
            let size = Int(status.st_size)
            var scan = scans[path] ?? Scan()
            if scan.offset > size { scan = Scan() }
            if scan.offset < size {
                let bytes = try Self.read(descriptor, from: scan.offset, to: size, path: path)
                scan.ids.formUnion(Self.messageIDs(in: bytes))
                scan.offset = size
            }
            scans[path] = scan
            guard !scan.ids.contains(delivery.serverMessageID) else { return false }
            var output = line
            if size > 0, try Self.read(descriptor, from: size - 1, to: size, path: path) != [0x0a] {
                // A line torn by a crash: end it, so that this record stays a line of its own.
                output.insert(0x0a, at: 0)
            }
            try Self.write(descriptor, output, path: path)
            scan.offset = size + output.count
            scan.ids.insert(delivery.serverMessageID)
            scans[path] = scan
            return true
        }
    }

    /// The records kept for `peer`, in file order; lines that are not records are skipped.
    public func records(withPeer peer: String) throws(ClientError) -> [HistoryRecord] {
        let path = path(forPeer: peer)
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else { throw Self.failure("cannot read", path) }
        let decoder = JSONDecoder()
        return data.split(separator: 0x0a).compactMap { try? decoder.decode(HistoryRecord.self, from: Data($0)) }
    }

    // MARK: - Files

    private func prepareDirectory() throws(ClientError) {
        try home.prepare()
        if mkdir(directory, 0o700) != 0, errno != EEXIST { throw Self.failure("cannot create", directory) }
    }

    /// The `server_msg_id` of every complete line in `bytes`.
    private static func messageIDs(in bytes: [UInt8]) -> Set<Int64> {
        struct Identified: Decodable {
            var id: Int64
            enum CodingKeys: String, CodingKey { case id = "server_msg_id" }
        }
        let decoder = JSONDecoder()
        var ids = Set<Int64>()
        for line in bytes.split(separator: 0x0a) where !line.isEmpty {
            if let record = try? decoder.decode(Identified.self, from: Data(line)) { ids.insert(record.id) }
        }
        return ids
    }

    private static func read(_ descriptor: Int32, from start: Int, to end: Int, path: String) throws(ClientError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: end - start)
        var done = 0
        while done < bytes.count {
            let result = bytes[done...].withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(start + done)) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else { throw failure("cannot read", path) }
            done += result
        }
        return bytes
    }

    private static func write(_ descriptor: Int32, _ bytes: [UInt8], path: String) throws(ClientError) {
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { systemWrite(descriptor, $0.baseAddress, $0.count) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else { throw failure("cannot write", path) }
            written += result
        }
    }

    private static func failure(_ what: String, _ path: String) -> ClientError {
        ClientError(.internalError, "\(what) \(path): \(String(cString: strerror(errno)))")
    }
}

/// write(2), under a name that the method `write` above does not shadow.
private func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}
