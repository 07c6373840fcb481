// Starts `endpointc lsp` for .ep files and hands it the `endpointc` settings.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function settings() {
  const config = vscode.workspace.getConfiguration("endpointc");
  return {
    definitions: config.get("definitions"),
    events: config.get("events"),
    index: config.get("index"),
    rules: config.get("rules"),
    debounce: config.get("debounce"),
  };
}

async function start() {
  const command = vscode.workspace.getConfiguration("endpointc").get("server.command") || "endpointc";
  client = new LanguageClient(
    "endpointc",
    "endpointc",
    { command, args: ["lsp"] },
    {
      documentSelector: [
        { scheme: "file", language: "endpointc" },
        { scheme: "untitled", language: "endpointc" },
      ],
      initializationOptions: { endpointc: settings() },
      synchronize: {
        configurationSection: "endpointc",
        fileEvents: vscode.workspace.createFileSystemWatcher("**/*.ep"),
      },
    },
  );
  await client.start();
}

async function activate(context) {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      // A different program needs a new server; other settings reach the running one.
      if (event.affectsConfiguration("endpointc.server.command")) {
        await deactivate();
        await start();
      }
    }),
  );
  try {
    await start();
  } catch (error) {
    vscode.window.showErrorMessage(
      `endpointc: could not start the language server (${error.message}). ` +
        "Install endpointc in a Python environment (pip install . in its repository), " +
        "and put it on the PATH or set endpointc.server.command to it.",
    );
  }
}

async function deactivate() {
  if (client) {
    const running = client;
    client = undefined;
    await running.stop();
  }
}

module.exports = { activate, deactivate };
