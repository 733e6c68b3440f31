/// The fixed strings and sizes of protocol version 1. `docs/PROTOCOL.md` quotes each of them.
public enum HandshakeConstants {
    public static let version: Int64 = 1
    public static let randomSize = 32
    public static let keyShareSize = 32
    public static let verifySize = 32

    /// Signed together with the transcript hash: `"MyIM-v1 server signature"` and one zero byte.
    public static let signatureContext: [UInt8] = Array("MyIM-v1 server signature".utf8) + [0]

    /// HKDF `info` labels; the salt is the transcript hash, the input the X25519 shared secret.
    public enum Label {
        public static let clientToServerKey = "MyIM-v1 c2s key"
        public static let clientToServerSalt = "MyIM-v1 c2s iv"
        public static let serverToClientKey = "MyIM-v1 s2c key"
        public static let serverToClientSalt = "MyIM-v1 s2c iv"
        public static let clientFinished = "MyIM-v1 c2s finished"
        public static let serverFinished = "MyIM-v1 s2c finished"
    }
}
