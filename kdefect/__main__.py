from kdefect.cli import main

main()
