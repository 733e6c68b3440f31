// Decoding helpers shared by the typed messages (1–44): nested dicts and lists of dicts whose
// errors name the full path of the bad key, enums carried as ints or strings, and the
// bounded identifiers (`client_msg_id`, `transfer_id`).

extension WireError {
    /// The same error with `path` put in front of the key it names, so that a missing `type`
    /// inside `message` is reported as `message.type`, and inside `msg[3]` as `msg[3].message.type`.
    ///
    /// Every key-naming error of ``WireDict``'s accessors reads `… key '<key>' …`.
    func nested(in path: String) -> WireError {
        guard let range = message.firstRange(of: "key '") else {
            return WireError(code, "\(message) (at \(path))")
        }
        var message = message
        message.insert(contentsOf: "\(path).", at: range.upperBound)
        return WireError(code, message)
    }
}

extension WireDict {
    /// A required dict value decoded by `decode`; errors inside it name `key.inner`.
    func nested<T>(_ key: String, _ decode: (WireDict) throws(WireError) -> T) throws(WireError) -> T {
        guard let value = try optionalNested(key, decode) else { throw .missingKey(key) }
        return value
    }

    /// An optional dict value decoded by `decode`; errors inside it name `key.inner`.
    func optionalNested<T>(_ key: String, _ decode: (WireDict) throws(WireError) -> T) throws(WireError) -> T? {
        guard let dict = try optionalDict(key) else { return nil }
        do { return try decode(dict) } catch { throw error.nested(in: key) }
    }

    /// A required list of dicts, each decoded by `decode`; errors inside element `i` name `key[i].inner`.
    func nestedList<T>(_ key: String, _ decode: (WireDict) throws(WireError) -> T) throws(WireError) -> [T] {
        try dictList(key).enumerated().map { (index, dict) throws(WireError) in
            do throws(WireError) { return try decode(dict) } catch { throw error.nested(in: "\(key)[\(index)]") }
        }
    }

    /// An optional list of dicts whose absence means empty.
    func nestedListOrEmpty<T>(_ key: String, _ decode: (WireDict) throws(WireError) -> T) throws(WireError) -> [T] {
        self[key] == nil ? [] : try nestedList(key, decode)
    }

    /// An optional list of ints whose absence means empty.
    func intListOrEmpty(_ key: String) throws(WireError) -> [Int64] {
        self[key] == nil ? [] : try intList(key)
    }

    /// A required string of 1–64 bytes of UTF-8: `client_msg_id`, `transfer_id`.
    func identifier(_ key: String) throws(WireError) -> String {
        let value = try string(key)
        let length = value.utf8.count
        guard (1...64).contains(length) else {
            throw .invalidField(key, "must be 1–64 bytes of UTF-8, found \(length)")
        }
        return value
    }

    /// A required int that must be the raw value of one of `E`'s cases.
    func intEnum<E: RawRepresentable & CaseIterable>(_ key: String) throws(WireError) -> E where E.RawValue == Int64 {
        guard let value: E = try optionalIntEnum(key) else { throw .missingKey(key) }
        return value
    }

    /// An optional int that, when present, must be the raw value of one of `E`'s cases.
    func optionalIntEnum<E: RawRepresentable & CaseIterable>(_ key: String) throws(WireError) -> E? where E.RawValue == Int64 {
        try known(key, optionalInt(key))
    }

    /// A required string that must be the raw value of one of `E`'s cases.
    func stringEnum<E: RawRepresentable & CaseIterable>(_ key: String) throws(WireError) -> E where E.RawValue == String {
        guard let value: E = try optionalStringEnum(key) else { throw .missingKey(key) }
        return value
    }

    /// An optional string that, when present, must be the raw value of one of `E`'s cases.
    func optionalStringEnum<E: RawRepresentable & CaseIterable>(_ key: String) throws(WireError) -> E? where E.RawValue == String {
        try known(key, optionalString(key))
    }

    private func known<E: RawRepresentable & CaseIterable>(_ key: String, _ raw: E.RawValue?) throws(WireError) -> E? {
        guard let raw else { return nil }
        guard let value = E(rawValue: raw) else {
            let allowed = E.allCases.map { String(reflecting: $0.rawValue) }.joined(separator: ", ")
            throw .invalidField(key, "\(String(reflecting: raw)) is not one of \(allowed)")
        }
        return value
    }
}

extension ErrorCode {
    /// The code carried in an int field (`code`, `errorcode`).
    init(wire value: Int64) { self.init(Int(truncatingIfNeeded: value)) }

    /// The code as an int field.
    var wire: WireValue { .int(Int64(rawValue)) }
}
