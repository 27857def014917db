// The publisher: the camera (getUserMedia) sent to the service over WHIP (RFC 9725).
// POST the offer as application/sdp to /api/whip?name=..., apply the answer, and
// DELETE the Location it returns when publishing stops.
import { api, localPath, tokenForm } from "./common.js";

const ICE_GATHERING_TIMEOUT_MS = 5000;
const $ = (id) => document.getElementById(id);
let session = null;   // {pc, stream, location}

function setStatus(text, isError = false) {
  const status = $("publish-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
  status.dataset.state = text;
}

function iceGatheringComplete(pc) {
  // No trickle ICE: WHIP here sends one offer with every candidate in it.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    window.setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);  // send what was gathered
  });
}

async function start(event) {
  event.preventDefault();
  if (session) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("this browser gives no camera here: open the page over https or on localhost", true);
    return;
  }
  const name = $("stream-name").value.trim();
  $("start").disabled = true;
  let stream = null;
  let pc = null;
  try {
    setStatus("asking for the camera…");
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    $("preview").srcObject = stream;
    pc = new RTCPeerConnection();
    for (const track of stream.getVideoTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      if (state === "connected") setStatus("publishing");
      else if (state === "failed") setStatus("connection failed", true);
      else if (state !== "closed") setStatus(state);
    });
    setStatus("connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const response = await api(`/api/whip?name=${encodeURIComponent(name)}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    const location = response.headers.get("Location");
    session = { pc, stream, location: location ? localPath(location) : null };
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    $("stop").disabled = false;
  } catch (error) {
    session = session || { pc, stream, location: null };
    await stop(`could not publish: ${error.message}`, true);
  }
}

async function stop(message = "stopped", isError = false) {
  const current = session;
  session = null;
  $("stop").disabled = true;
  $("start").disabled = false;
  if (!current) return;
  let failure = null;
  if (current.location) {
    // End the WHIP session first: once the peer connection closes, the service ends
    // the session by itself and the DELETE would find nothing (404).
    try {
      await api(current.location, { method: "DELETE" });
    } catch (error) {
      if (error.status !== 404) failure = error;
    }
  }
  if (current.pc) current.pc.close();
  if (current.stream) for (const track of current.stream.getTracks()) track.stop();
  $("preview").srcObject = null;
  if (failure) setStatus(`${message}; the service did not end the session: ${failure.message}`, true);
  else setStatus(message, isError);
}

tokenForm($("token-form"), $("token"), () => setStatus("token saved"));
$("publish-form").addEventListener("submit", start);
$("stop").addEventListener("click", () => stop());
// Leaving the page ends the session too (keepalive lets the DELETE outlive the page).
window.addEventListener("pagehide", () => {
  if (session && session.location) {
    api(session.location, { method: "DELETE", keepalive: true }).catch(() => {});
  }
});
