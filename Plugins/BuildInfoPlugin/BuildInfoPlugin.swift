//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` (the git commit and the build date) before the `portico` target builds, for
/// `portico version`. Outside a git checkout the commit is "unknown". The file is rewritten only when the commit
/// changes, so an incremental build does not recompile the executable for the date alone: the date is that of the
/// first build of the commit.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildInfo.swift")
        let script = """
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            dirty=$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
            [ -n "$dirty" ] && commit="$commit-modified"
            if ! grep -qs "buildCommit = \"$commit\"" "$2"; then
                date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
                printf 'let buildCommit = "%s"\\nlet buildDate = "%s"\\n' "$commit" "$date" > "$2.tmp"
                mv "$2.tmp" "$2"
            fi
            """
        return [
            .prebuildCommand(
                displayName: "Build info (git commit, date)",
                executable: URL(filePath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path(), output.path()],
                outputFilesDirectory: context.pluginWorkDirectoryURL
            )
        ]
    }
}
