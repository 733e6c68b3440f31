import ArgumentParser
import MyIMOps

/// `myim`: every MyIM role and tool is a subcommand of this one binary.
@main
struct MyIM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myim",
        abstract: "MyIM: an instant-messaging cluster with end-to-end-authenticated encryption.",
        version: MyIMVersion.string,
        subcommands: [
            KeysCommand.self, TopologyCommand.self, ClusterCommand.self, LoginCenterCommand.self, CenterCommand.self, EndpointCommand.self, RegisterCommand.self, LoginCommand.self, WhoamiCommand.self, SendCommand.self, InboxCommand.self, ChatCommandLine.self,
            FriendCommand.self, ProfileCommand.self, GroupCommand.self, ServeCommand.self,
            HealthCommand.self, StatusCommand.self, Bench.self,
        ]
    )

    static func main() async {
        EventLoopThreads.matchCPUAffinity()
        await main(nil)
    }
}

enum MyIMVersion {
    static let string = "0.1.0"
}
