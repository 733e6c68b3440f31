import ArgumentParser
import Foundation
import MyIMClient
import MyIMWire

/// Connects with `endpoint`, runs `body`, then quits (a failed quit is only a warning).
func withMessagingConnection<Result>(
    _ endpoint: MessagingEndpointOptions, _ output: ClientOutputOptions, _ body: (MessagingConnection) async throws(ClientError) -> Result
) async throws(ClientError) -> Result {
    let connection = try await endpoint.connect(home: output.clientHome)
    let result: Result
    do {
        result = try await body(connection)
    } catch {
        await connection.close()
        throw error
    }
    do {
        try await connection.quit()
    } catch {
        FileHandle.standardError.write(Data("myim: warning: the session did not end cleanly: \(error.message)\n".utf8))
    }
    return result
}

/// `myim friend add ADDRESS`, `myim friend list`.
struct FriendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "friend",
        abstract: "Add friends and list them.",
        subcommands: [Add.self, List.self]
    )

    /// `myim friend add bob@alpha.example`: befriends a user (3 → 14).
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Befriend a user.",
            discussion: """
                Uses the saved session (myim login) and the best endpoint of its signed server list, or --endpoint. \
                Prints whether the user is a new friend or was one already ({"username", "status": "added"|"already"} \
                with --json). Exits with 1 and the server's message when refused (e.g. 332 for a user who never signed in).
                """
        )

        @Argument(help: "The user's address, e.g. bob@alpha.example (a bare name means your own domain).")
        var address: String

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func validate() throws {
            guard !address.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("give the user's address") }
        }

        func run() async throws {
            do {
                let address = address
                let (result, friend) = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    (try await connection.addFriend(address), connection.qualified(address))
                }
                let username = result.username ?? friend
                let added = result.status == .added
                if output.json {
                    output.printJSON(["username": username, "status": added ? "added" : "already"])
                } else {
                    print(added ? "\(username) is now a friend" : "\(username) is already a friend")
                }
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// `myim friend list`: the user's friends and their signatures (30 → 31).
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List your friends.",
            discussion: """
                Prints one friend a line: the address and the signature ({"friends": [{"username", "user_id", \
                "signature"}]} with --json). Exits with 1 and the server's message on failure.
                """
        )

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let friends = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    try await connection.friends()
                }
                if output.json {
                    output.printJSON(["friends": friends.map { friend -> [String: Any] in
                        var object: [String: Any] = ["username": friend.username, "user_id": friend.userID]
                        if let signature = friend.signature { object["signature"] = signature }
                        return object
                    }])
                } else if friends.isEmpty {
                    print("no friends yet")
                } else {
                    for friend in friends {
                        let signature = friend.signature.flatMap { $0.isEmpty ? nil : $0 }
                        print(signature.map { "\(friend.username)  \($0)" } ?? friend.username)
                    }
                }
            } catch {
                throw output.fail(error)
            }
        }
    }
}

/// `myim profile get [ADDRESS]`, `myim profile set SIGNATURE`.
struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Show a user's profile, or set your signature.",
        subcommands: [Get.self, SetSignature.self]
    )

    /// `myim profile get [bob@alpha.example]`: a user's profile (27 → 28), one's own by default.
    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get",
            abstract: "Show a user's profile (yours by default).",
            discussion: """
                Prints the address, user id, signature and, when you may see it, whether the user is online \
                ({"username", "user_id", "signature", "online"} with --json). Exits with 1 and the server's message on failure.
                """
        )

        @Argument(help: "The user's address (a bare name means your own domain; default: yourself).")
        var address: String?

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let address = address
                let profile = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    try await connection.profile(of: address ?? connection.authOK.username)
                }
                ProfileCommand.show(profile, output: output)
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// `myim profile set "text"`: sets one's signature (29 → 28).
    struct SetSignature: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Set your signature (profile text).",
            discussion: """
                Prints your new profile, as myim profile get does. Exits with 1 and the server's message on failure.
                """
        )

        @Argument(help: "The new signature (an empty string clears it).")
        var signature: String

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let signature = signature
                let profile = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    try await connection.setSignature(signature)
                }
                ProfileCommand.show(profile, output: output)
            } catch {
                throw output.fail(error)
            }
        }
    }

    static func show(_ profile: Profile, output: ClientOutputOptions) {
        if output.json {
            var object: [String: Any] = ["username": profile.username, "signature": profile.signature]
            if let userID = profile.userID { object["user_id"] = userID }
            if let online = profile.online { object["online"] = online }
            output.printJSON(object)
        } else {
            var line = profile.username
            if let userID = profile.userID { line += " (id \(userID))" }
            if let online = profile.online { line += online ? ", online" : ", offline" }
            print(line)
            print("signature: \(profile.signature.isEmpty ? "(none)" : profile.signature)")
        }
    }
}
