// An independent OPC UA stack (node-opcua) approves a protocol with an electronic signature
// (SPEC §12): a qa user signs in over Basic256Sha256 SignAndEncrypt, finds
// DeviceSet/<instrument>/Protocols, calls ApproveProtocol(TemplateId, Signature) and then
// ShowProtocol. Prints one line: RESULT {...} (JSON).
// usage: node approve_protocol.js ENDPOINT PKI_DIR TEMPLATE_ID USER PASSWORD
"use strict";
const opcua = require("node-opcua");

async function child(session, nodeId, name) {
  const browsed = await session.browse(nodeId);
  const ref = browsed.references.find((r) => r.browseName.name === name);
  if (!ref) throw new Error(`no ${name} below ${nodeId.toString()}`);
  return ref.nodeId;
}

async function main() {
  const [endpoint, pkiDir, templateId, user, password] = process.argv.slice(2);
  const client = opcua.OPCUAClient.create({
    applicationName: "node-opcua QA test",
    applicationUri: "urn:cellshuttle:tests:node-opcua-qa",
    securityMode: opcua.MessageSecurityMode.SignAndEncrypt,
    securityPolicy: opcua.SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: new opcua.OPCUACertificateManager({
      rootFolder: pkiDir, automaticallyAcceptUnknownCertificate: true,
    }),
  });
  const result = {};
  await client.connect(endpoint);
  try {
    const session = await client.createSession({
      type: opcua.UserTokenType.UserName, userName: user, password,
    });
    const deviceSet = await child(session, opcua.resolveNodeId("ObjectsFolder"), "DeviceSet");
    const device = (await session.browse(deviceSet)).references[0].nodeId;
    const protocols = await child(session, device, "Protocols");
    const call = async (name, args) => {
      const answer = await session.call({
        objectId: protocols,
        methodId: await child(session, protocols, name),
        inputArguments: args.map((value) => ({ dataType: opcua.DataType.String, value })),
      });
      return { status: answer.statusCode.name,
               outputs: (answer.outputArguments || []).map((v) => v.value) };
    };
    const signature = (pw) => JSON.stringify(
      { meaning: "approved", password: pw, comment: "approved from node-opcua" });
    result.wrong_password = (await call("ApproveProtocol", [templateId, signature("wrong")])).status;
    result.approve = await call("ApproveProtocol", [templateId, signature(password)]);
    result.shown = JSON.parse((await call("ShowProtocol", [templateId])).outputs[0]);
    await session.close();
  } finally {
    await client.disconnect();
  }
  console.log("RESULT " + JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
