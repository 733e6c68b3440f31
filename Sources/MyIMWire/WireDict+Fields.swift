/// Typed access to a body's fields, for message decoders.
///
/// `required` accessors throw ``ErrorCode/missingKey`` naming the key; every accessor
/// throws ``ErrorCode/wrongValueType`` when the key holds another type. Unknown keys are
/// never looked at, which is what makes the protocol forward compatible.
extension WireDict {
    public func int(_ key: String) throws(WireError) -> Int64 {
        guard let value = try optionalInt(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalInt(_ key: String) throws(WireError) -> Int64? {
        guard let value = self[key] else { return nil }
        guard case .int(let int) = value else { throw .wrongType(key, expected: .int, found: value.kind) }
        return int
    }

    public func string(_ key: String) throws(WireError) -> String {
        guard let value = try optionalString(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalString(_ key: String) throws(WireError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let string) = value else { throw .wrongType(key, expected: .string, found: value.kind) }
        return string
    }

    public func bool(_ key: String) throws(WireError) -> Bool {
        guard let value = try optionalBool(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalBool(_ key: String) throws(WireError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let bool) = value else { throw .wrongType(key, expected: .bool, found: value.kind) }
        return bool
    }

    public func bytes(_ key: String) throws(WireError) -> [UInt8] {
        guard let value = try optionalBytes(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalBytes(_ key: String) throws(WireError) -> [UInt8]? {
        guard let value = self[key] else { return nil }
        guard case .bytes(let bytes) = value else { throw .wrongType(key, expected: .bytes, found: value.kind) }
        return bytes
    }

    public func dict(_ key: String) throws(WireError) -> WireDict {
        guard let value = try optionalDict(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalDict(_ key: String) throws(WireError) -> WireDict? {
        guard let value = self[key] else { return nil }
        guard case .dict(let dict) = value else { throw .wrongType(key, expected: .dict, found: value.kind) }
        return dict
    }

    public func list(_ key: String) throws(WireError) -> [WireValue] {
        guard let value = try optionalList(key) else { throw .missingKey(key) }
        return value
    }

    public func optionalList(_ key: String) throws(WireError) -> [WireValue]? {
        guard let value = self[key] else { return nil }
        guard case .list(let list) = value else { throw .wrongType(key, expected: .list, found: value.kind) }
        return list
    }

    /// A list whose elements must all be strings.
    public func stringList(_ key: String) throws(WireError) -> [String] {
        try list(key).enumerated().map { (index, element) throws(WireError) in
            guard case .string(let string) = element else {
                throw .wrongType("\(key)[\(index)]", expected: .string, found: element.kind)
            }
            return string
        }
    }

    /// A list whose elements must all be ints.
    public func intList(_ key: String) throws(WireError) -> [Int64] {
        try list(key).enumerated().map { (index, element) throws(WireError) in
            guard case .int(let int) = element else {
                throw .wrongType("\(key)[\(index)]", expected: .int, found: element.kind)
            }
            return int
        }
    }

    /// A list whose elements must all be dicts.
    public func dictList(_ key: String) throws(WireError) -> [WireDict] {
        try list(key).enumerated().map { (index, element) throws(WireError) in
            guard case .dict(let dict) = element else {
                throw .wrongType("\(key)[\(index)]", expected: .dict, found: element.kind)
            }
            return dict
        }
    }
}
